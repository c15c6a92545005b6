"""SMAX (jaxmarl, run for real) and the SMAC battle logic it shares with sc2v2."""
import os
import sys

import numpy as np
import pytest

from envs import REGISTRY as env_REGISTRY
from envs.smac_battle import LOST, WON, RewardSettings, SmacReward
from helpers import TINY, metric, read_json, run_main, sacred_runs

# The heuristic enemy walks up but never shoots, so a scripted team wins and standing still times out.
HARMLESS_ENEMY = {"map_name": "smacv2_5_units", "max_steps": 50, "enemy_shoots": False}


def make_smax(seed=0, **kwargs):
    return env_REGISTRY["smax"](**{**HARMLESS_ENEMY, **kwargs}, seed=seed, common_reward=True,
                                reward_scalarisation="sum")


def attack_or_stop(env):
    """Each agent attacks the first enemy in range, else stops (action 4)."""
    attacks = np.asarray(env.get_avail_actions())[:, 5:]
    return np.where(attacks.any(axis=1), 5 + attacks.argmax(axis=1), 4)


def play(env, policy):
    env.reset()
    episode_return, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy(env))
        episode_return += reward
        done = terminated or truncated
    return episode_return, terminated, truncated, info


# --- SMAC's reward, on known numbers --------------------------------------------------------------
def test_smac_reward_counts_damage_kills_and_the_win_then_scales():
    # Allies 0-1, enemies 2-3 with max health 100 and 50: max_reward = 2 * 10 + 200 + 150 = 370.
    reward = SmacReward(RewardSettings(), n_allies=2)
    reward.start_episode(np.array([100.0, 50.0]))
    before, after = np.array([40.0, 40.0, 100.0, 50.0]), np.array([40.0, 30.0, 60.0, 0.0])
    assert reward(before, after, None) == pytest.approx((40 + 50 + 10) / (370 / 20))  # ally damage ignored
    assert reward(before, after, WON) == pytest.approx((100 + 200) / 18.5)

    penalised = SmacReward(RewardSettings(reward_only_positive=False, reward_scale=False), n_allies=2)
    penalised.start_episode(np.array([100.0, 50.0]))
    killed_ally = np.array([0.0, 30.0, 60.0, 0.0])
    assert penalised(before, killed_ally, None) == pytest.approx(100 - 0.5 * 10 - 0.5 * (40 + 10))

    sparse = SmacReward(RewardSettings(reward_sparse=True, reward_scale=False), n_allies=2)
    assert [sparse(before, after, outcome) for outcome in (None, WON, LOST)] == [0.0, 1.0, -1.0]


def test_a_perfect_episode_returns_reward_scale_rate():
    reward = SmacReward(RewardSettings(reward_scale_rate=20), n_allies=1)
    reward.start_episode(np.array([30.0, 45.0]))
    healths = [np.array([10.0, 30.0, 45.0]), np.array([10.0, 0.0, 20.0]), np.array([10.0, 0.0, 0.0])]
    total = reward(healths[0], healths[1], None) + reward(healths[1], healths[2], WON)
    assert total == pytest.approx(20.0)


def test_reward_settings_are_checked():
    with pytest.raises(ValueError, match="reward_win"):
        RewardSettings(reward_win="lots")
    with pytest.raises(ValueError, match="reward_sparse"):
        RewardSettings(reward_sparse=1)


# --- the SMAX env ---------------------------------------------------------------------------------
def test_a_won_battle_is_a_terminal_with_the_true_final_state_and_a_win():
    env = make_smax(seed=0)
    for _ in range(3):
        episode_return, terminated, truncated, info = play(env, attack_or_stop)
        assert terminated and not truncated and "episode_limit" not in info
        assert info["battle_won"] is True and info["dead_enemies"] == 5 and info["dead_allies"] == 0
        assert episode_return == pytest.approx(20.0)  # all enemy health, kills and the win, scaled
        # SMAX's own step would have reset the battle here; the state must still show it won:
        # world-state features per unit (health first), enemies all dead, allies alive.
        units = env.get_state()[: 10 * 10].reshape(10, 10)
        assert (units[5:, 0] == 0).all() and (units[:5, 0] > 0).all()
    assert env.get_stats()["battles_won"] == 3 and env.get_stats()["win_rate"] == 1.0


def test_the_step_limit_is_a_time_out():
    env = make_smax(seed=1)
    _, terminated, truncated, info = play(env, lambda env: np.full(env.n_agents, 4))
    assert env._t == 50 and truncated and not terminated
    assert info["episode_limit"] is True and info["battle_won"] is False
    assert env.get_stats()["timeouts"] == 1


def test_per_agent_rewards_copy_the_team_reward():
    env = env_REGISTRY["smax"](**HARMLESS_ENEMY, seed=0, common_reward=False, reward_scalarisation="sum")
    env.reset()
    for _ in range(30):
        _, reward, terminated, truncated, _ = env.step(attack_or_stop(env))
        assert reward.shape == (5,) and np.all(reward == reward[0])
        if terminated or truncated:
            break


def test_unavailable_actions_and_unknown_maps_are_refused():
    env = make_smax()
    env.reset()
    unavailable = int(np.flatnonzero(env.get_avail_actions()[2] == 0)[0])
    actions = np.full(env.n_agents, 4)
    actions[2] = unavailable
    with pytest.raises(ValueError, match=f"agent 2 chose action {unavailable}"):
        env.step(actions)
    with pytest.raises(ValueError, match="smacv2_5_units"):
        make_smax(map_name="smacv2_6_units")


def test_compiled_code_is_cached_on_disk():
    import jax

    from envs.smax import DEFAULT_CACHE_DIR

    make_smax()
    cache_dir = jax.config.jax_compilation_cache_dir
    assert cache_dir == os.environ.get("JAX_COMPILATION_CACHE_DIR", DEFAULT_CACHE_DIR)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0 and any(os.scandir(cache_dir))


def test_missing_jaxmarl_says_what_to_install(monkeypatch):
    import envs.smax

    streams = sys.stdout, sys.stderr
    monkeypatch.setitem(sys.modules, "jaxmarl.environments", None)
    with pytest.raises(ImportError, match="pip install jaxmarl"):
        envs.smax._import_jax()
    assert (sys.stdout, sys.stderr) == streams


# --- training end to end (the real entry point) ----------------------------------------------------
@pytest.mark.parametrize("alg", ["qmix", "sale_mb"])
@pytest.mark.parametrize("runner", ["episode", "parallel"])
def test_trains_on_smax(tmp_path, alg, runner):
    # max_steps as in the conformance test's smax case, so the compiled code is already cached.
    overrides = [*TINY, "env_args.max_steps=25", "epsilon_anneal_time=500", f"runner={runner}"]
    if runner == "parallel":
        overrides.append("batch_size_run=2")
    if alg == "sale_mb":
        overrides.append("wm_warmup=2")  # imagination and imagined TD run within the budget
    result = run_main(alg, "smax", tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-3000:]

    (run,) = sacred_runs(tmp_path, alg)
    assert os.path.basename(os.path.dirname(run)) == "smacv2_5_units"
    config = read_json(run, "config.json")
    assert config["env_args"]["seed"] == 7 and config["env_args"]["max_steps"] == 25
    metrics = read_json(run, "metrics.json")
    for key in ("battle_won_mean", "test_battle_won_mean", "dead_allies_mean", "dead_enemies_mean",
                "return_mean", "test_return_mean", "loss"):
        assert key in metrics, f"{key} missing from metrics.json: {sorted(metrics)}"
    if alg == "sale_mb":
        for key in ("imagined_td_loss", "wm_kl_loss", "wm_latent_error_1step", "agent_sale_loss"):
            assert key in metrics, f"{key} missing from metrics.json: {sorted(metrics)}"
    assert all(0.0 <= value <= 1.0 for _, value in metric(metrics, "battle_won_mean"))
    assert all(1 <= value <= 25 for _, value in metric(metrics, "ep_length_mean"))
    # Importing jaxmarl must not cut Sacred's capture of the run's output short.
    assert "steps/s" in open(os.path.join(run, "cout.txt")).read()
