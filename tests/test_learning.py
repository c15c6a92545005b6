"""Learning checks with a known answer: a one-step cooperative matrix game.

Payoff [[10, 0, 0], [0, 2, 0], [0, 0, 5]]: the optimum is 10 (both agents pick action 0), and no
miscoordination penalty hides it, so IQL, VDN, QMIX and SALE-MB should all find it. Each run uses the real
entry point and reads the greedy test return Sacred recorded.
"""
import pytest

from helpers import metric, read_json, run_main, sacred_runs

OPTIMUM = 10.0
BUDGET = ["t_max=2000", "epsilon_anneal_time=1000", "test_interval=500", "test_nepisode=8",
          "log_interval=500", "runner_log_interval=500", "learner_log_interval=500",
          "batch_size=32", "buffer_size=500", "target_update_interval_or_tau=50", "seed=3",
          "env_args.payoff=[[10, 0, 0], [0, 2, 0], [0, 0, 5]]"]


@pytest.mark.parametrize("alg", ["iql", "vdn", "qmix", "qmix_ns", "sale_mb"])
def test_reaches_the_optimum_of_a_cooperative_matrix_game(tmp_path, alg):
    result = run_main(alg, "matrix_game", tmp_path, BUDGET)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(sacred_runs(tmp_path, alg)[0], "metrics.json")
    test_returns = metric(metrics, "test_return_mean")
    assert test_returns[-1][0] >= 2000
    assert test_returns[-1][1] >= 0.95 * OPTIMUM, test_returns


# Actor-critic methods: 4 parallel envs, 4 episodes per on-policy update, entropy_coef 0.01 (the
# value EPyMARL gives MAA2C and the _ns variants), 2000 steps = 500 updates. Their test episodes
# sample from the policy (soft_policies), so the bar is 90% of the optimum.
ACTOR_CRITIC = ["ia2c", "ippo", "maa2c", "mappo", "coma",
                "ia2c_ns", "ippo_ns", "maa2c_ns", "mappo_ns", "coma_ns"]
AC_BUDGET = ["t_max=2000", "batch_size_run=4", "batch_size=4", "buffer_size=4", "entropy_coef=0.01",
             "test_interval=500", "test_nepisode=8", "log_interval=500", "runner_log_interval=500",
             "learner_log_interval=500", "seed=3", "env_args.payoff=[[10, 0, 0], [0, 2, 0], [0, 0, 5]]"]


@pytest.mark.parametrize("alg", ACTOR_CRITIC)
def test_actor_critic_reaches_the_optimum_of_a_cooperative_matrix_game(tmp_path, alg):
    result = run_main(alg, "matrix_game", tmp_path, AC_BUDGET)
    assert result.returncode == 0, result.stderr[-3000:]
    test_returns = metric(read_json(sacred_runs(tmp_path, alg)[0], "metrics.json"), "test_return_mean")
    assert test_returns[-1][0] >= 2000
    assert test_returns[-1][1] >= 0.9 * OPTIMUM, test_returns


# The continuous game's optimum is 1 (a = (0.7, 0.3)); greedy (mean) actions start near 0.3.
# 200 updates of 10 episodes; the policy starts with std e^-1 and advantages are normalised.
CONTINUOUS_BUDGET = ["t_max=2000", "test_interval=500", "test_nepisode=10", "seed=3",
                     "log_std_init=-1.0", "normalise_advantages=True"]


@pytest.mark.parametrize("alg", ["ippo", "mappo"])
def test_gaussian_policies_reach_the_optimum_of_a_continuous_cooperative_game(tmp_path, alg):
    result = run_main(alg, "continuous_game", tmp_path, CONTINUOUS_BUDGET)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(sacred_runs(tmp_path, alg)[0], "metrics.json")
    test_returns = metric(metrics, "test_return_mean")
    assert test_returns[0][1] < 0.5, test_returns                 # not solved before training
    assert test_returns[-1][0] >= 2000
    assert test_returns[-1][1] >= 0.9, test_returns                # 90% of the optimum
    entropies = [v for _, v in metric(metrics, "entropy")]
    assert entropies[-1] < entropies[0]                            # the policy narrowed
