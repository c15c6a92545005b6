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
