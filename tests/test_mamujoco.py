"""Multi-Agent MuJoCo: the paper's factorisations, padding, discretised and continuous actions,
time-outs, seeding, and short QMIX runs through the real entry point."""
import os

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from envs import REGISTRY as env_REGISTRY  # noqa: E402
from helpers import TINY, metric, read_json, run_main, sacred_runs  # noqa: E402

# (scenario, agent_conf) -> per-agent observation sizes and state size with agent_obsk=1
PAPER_CONFS = {
    ("HalfCheetah", "6x1"): ([9, 9, 8, 9, 9, 8], 17),
    ("Hopper", "3x1"): ([8, 9, 8], 11),
    ("Ant", "8x1"): ([29, 32] * 4, 105),
    ("Walker2d", "6x1"): ([8, 9, 9, 8, 9, 9], 17),
}


def make_env(scenario="HalfCheetah", agent_conf="6x1", seed=0, **kwargs):
    return env_REGISTRY["mamujoco"](scenario=scenario, agent_conf=agent_conf, seed=seed, **kwargs)


def raw_observations(env):
    """MaMuJoCo's own (unpadded) per-agent observations of the current step."""
    raw = env._env._get_obs()
    return [raw[agent] for agent in env._env.possible_agents]


def actuator_ids(env):
    return [partition[0].act_ids for partition in env._env.agent_action_partitions]


def random_episode(env, rng, max_steps=None):
    obs, _ = env.reset()
    observations, states, ends = [obs], [env.get_state()], None
    for _ in range(max_steps or env.episode_limit):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, env.n_actions, env.n_agents).tolist())
        observations.append(obs)
        states.append(env.get_state())
        ends = (terminated, truncated)
        if terminated or truncated:
            break
    return np.array(observations), np.array(states), ends


@pytest.mark.parametrize("scenario,agent_conf", list(PAPER_CONFS))
def test_paper_confs_build_with_padded_observations_and_env_state(scenario, agent_conf):
    obs_sizes, state_size = PAPER_CONFS[scenario, agent_conf]
    env = make_env(scenario, agent_conf)
    assert env.get_env_info() == {"state_shape": state_size, "obs_shape": max(obs_sizes), "n_actions": 11,
                                  "n_agents": len(obs_sizes), "episode_limit": 1000,
                                  "continuous_actions": False}
    assert sorted(set(actuator_ids(env))) == list(range(len(obs_sizes)))   # one joint per agent, each once
    obs, _ = env.reset()
    env.step([3] * env.n_agents)
    for agent_id, (size, raw) in enumerate(zip(obs_sizes, raw_observations(env))):
        assert raw.shape == (size,)
        assert np.allclose(env.get_obs()[agent_id, :size], raw) and not env.get_obs()[agent_id, size:].any()
        assert np.array_equal(env.get_obs_agent(agent_id), env.get_obs()[agent_id])
    assert env.get_obs().dtype == np.float32 and env.get_state().dtype == np.float32
    assert np.allclose(env.get_state(), env._env.state())
    assert np.array_equal(env.get_avail_actions(), np.ones((len(obs_sizes), 11)))


def test_each_action_index_drives_its_joint_with_an_evenly_spaced_value():
    env = make_env()
    env.reset()
    values = np.linspace(-1.0, 1.0, 11)
    assert np.allclose(env.action_values(0)[:, 0], values)
    actions = [0, 2, 5, 7, 10, 4]
    env.step(actions)
    controls = env._unwrapped.data.ctrl
    for agent_id, act_id in enumerate(actuator_ids(env)):
        assert controls[act_id] == pytest.approx(values[actions[agent_id]])
    three_bins = make_env(action_bins=3)
    assert three_bins.get_total_actions() == 3 and np.allclose(three_bins.action_values(2)[:, 0], [-1, 0, 1])


def test_agents_with_several_joints_pick_combinations_of_bins():
    env = make_env("HalfCheetah", "2x3", action_bins=3)
    assert env.get_total_actions() == 27
    assert len({tuple(row) for row in env.action_values(0)}) == 27
    with pytest.raises(ValueError, match="fewer env_args.action_bins"):
        make_env("Ant", "2x4", action_bins=11)


def test_continuous_actions_expose_the_box_and_reach_the_joints():
    env = make_env(action_bins=None)
    info = env.get_env_info()
    assert info["n_actions"] == 1 and info["n_agents"] == 6 and info["continuous_actions"] is True
    assert all(box.shape == (1,) and box.low[0] == -1 and box.high[0] == 1 for box in env.continuous_action_space)
    env.reset()
    actions = [[0.25], [-0.5], [2.0], [0.0], [0.75], [-1.0]]
    env.step(actions)
    controls = env._unwrapped.data.ctrl
    for agent_id, act_id in enumerate(actuator_ids(env)):
        assert controls[act_id] == pytest.approx(np.clip(actions[agent_id][0], -1, 1))
    with pytest.raises(TypeError, match="action_bins"):
        env.step([0] * 6)   # what a value-based learner would send


def test_time_limit_is_a_truncation_and_the_default_is_1000_steps():
    env = make_env(time_limit=25)
    assert env.episode_limit == 25
    env.reset()
    for t in range(1, 26):
        _, _, terminated, truncated, info = env.step([5] * 6)
        assert not terminated and truncated == (t == 25) and info.get("episode_limit", False) == (t == 25)

    env = make_env()
    assert env._env.single_agent_env.spec.max_episode_steps == 1000
    env.reset()
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step([5] * 6)
        steps += 1
        if terminated or truncated:
            break
    assert (steps, terminated, truncated, info["episode_limit"]) == (1000, False, True, True)
    assert {"x_position", "x_velocity", "return_forward", "return_ctrl"} <= set(info)


def test_falling_over_is_a_real_terminal_even_on_the_last_step():
    env = make_env("Hopper", "3x1", seed=3)
    observations, _, ends = random_episode(env, np.random.default_rng(0))
    assert ends == (True, False)
    fall_step = len(observations) - 1
    env = make_env("Hopper", "3x1", seed=3, time_limit=fall_step)   # the same fall, at the time limit
    observations, _, ends = random_episode(env, np.random.default_rng(0))
    assert len(observations) - 1 == fall_step and ends == (True, False)


def test_seed_reproduces_episodes_and_later_resets_continue_the_stream():
    episodes = {}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        env = make_env("Walker2d", "6x1", seed=seed)
        episodes[name] = [random_episode(env, np.random.default_rng(i), max_steps=40) for i in range(2)]
    for (obs_a, states_a, _), (obs_b, states_b, _) in zip(episodes["a"], episodes["b"]):
        assert np.array_equal(obs_a, obs_b) and np.array_equal(states_a, states_b)
    assert not np.array_equal(episodes["a"][0][1][0], episodes["a"][1][1][0])   # a new initial pose
    assert not np.array_equal(episodes["a"][0][1][0], episodes["c"][0][1][0])


def test_rng_state_round_trip_reproduces_the_continuation():
    env = make_env("Ant", "8x1", seed=21)
    random_episode(env, np.random.default_rng(0), max_steps=30)
    saved = env.get_rng_state()
    continuation = random_episode(env, np.random.default_rng(1), max_steps=30)

    restored = make_env("Ant", "8x1", seed=999)
    restored.set_rng_state(saved)
    replay = random_episode(restored, np.random.default_rng(1), max_steps=30)
    assert np.array_equal(continuation[0], replay[0]) and np.array_equal(continuation[1], replay[1])


def test_unknown_conf_names_the_ones_that_exist():
    with pytest.raises(ValueError, match="Walker2d 2x3"):
        make_env("Walker2d", "3x2")


@pytest.mark.parametrize("alg", ["qmix", "sale_mb"])
@pytest.mark.parametrize("runner", ["episode", "parallel"])
def test_trains_on_halfcheetah_6x1(tmp_path, alg, runner):
    overrides = [*TINY, "env_args.time_limit=50", f"runner={runner}", "epsilon_anneal_time=500"]
    if runner == "parallel":
        overrides.append("batch_size_run=2")
    if alg == "sale_mb":
        # imagination and imagined TD run within the budget (the model on every update)
        overrides += ["wm_warmup=2", "model_update_interval=1"]
    result = run_main(alg, "mamujoco", tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-3000:]

    (run_dir,) = sacred_runs(tmp_path, alg)
    assert os.path.basename(os.path.dirname(run_dir)) == "HalfCheetah_6x1"
    assert read_json(run_dir, "run.json")["status"] == "COMPLETED"
    metrics = read_json(run_dir, "metrics.json")
    for key in ("return_mean", "test_return_mean", "loss", "q_taken_mean", "x_position_mean",
                "return_forward_mean", "test_return_ctrl_mean"):
        assert key in metrics, f"{key} missing from metrics.json: {sorted(metrics)}"
    if alg == "sale_mb":
        for key in ("imagined_td_loss", "wm_kl_loss", "wm_latent_error_1step", "agent_sale_loss"):
            assert key in metrics, f"{key} missing from metrics.json: {sorted(metrics)}"
    assert all(length == 50 for _, length in metric(metrics, "ep_length_mean"))   # HalfCheetah only times out
    assert metric(metrics, "return_mean")[-1][0] >= 600
