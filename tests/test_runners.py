"""Episode and parallel runners on real Level-Based Foraging and on small scripted envs.

The controller is replaced by ``RandomMAC``, a test double that picks uniformly among the
available actions it reads from the batch; everything else (envs, EpisodeBatch, workers) is real.
"""
import os
import signal
import types
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from components.episode_buffer import EpisodeBatch
from components.transforms import OneHot
from envs import REGISTRY as env_REGISTRY
from envs.multiagentenv import MultiAgentEnv
from runners import REGISTRY as runner_REGISTRY
from runners.batch_writer import BatchWriter

LBF_ARGS = {"key": "lbforaging:Foraging-8x8-2p-2f-coop-v3", "time_limit": 50, "pretrained_wrapper": None, "seed": 7}


class RandomMAC:
    """Test double for the controller only: uniform over the available actions in the batch, drawn
    from its own torch generator (so tests can save and restore it)."""

    def __init__(self, seed=0):
        self.generator = torch.Generator().manual_seed(seed)
        self.action_selector = types.SimpleNamespace(epsilon=0.25)

    def init_hidden(self, batch_size):
        pass

    def select_actions(self, batch, t_ep, t_env, bs=slice(None), test_mode=False):
        avail = batch["avail_actions"][bs, t_ep].float()
        picks = torch.multinomial(avail.reshape(-1, avail.shape[-1]), 1, generator=self.generator)
        return picks.reshape(avail.shape[:-1])


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats.setdefault(key, []).append((t, value))


class CountdownEnv(MultiAgentEnv):
    """Episodes end in a real terminal after ``2 + seed % 4`` steps, or time out at
    ``episode_limit``; observations are ``[seed, t]``. ``fail_at_step`` makes ``step`` raise."""

    def __init__(self, seed=0, episode_limit=4, fail_at_step=None, common_reward=True, reward_scalarisation="sum"):
        self.n_agents, self.episode_limit = 2, episode_limit
        self.seed_value, self.length, self.fail_at_step = seed, 2 + seed % 4, fail_at_step
        self.reward = 1.0 if common_reward else np.ones(2)
        self.t = 0

    def reset(self, seed=None, options=None):
        self.t = 0
        return self.get_obs(), {}

    def step(self, actions):
        self.t += 1
        if self.t == self.fail_at_step:
            raise ValueError("boom: CountdownEnv failed on purpose")
        terminated = self.t >= self.length
        truncated = not terminated and self.t >= self.episode_limit
        info = {"won": float(terminated), "episode_limit": True} if truncated else {"won": float(terminated)}
        return self.get_obs(), self.reward, terminated, truncated, info

    def get_obs(self):
        return np.array([[self.seed_value, self.t]] * 2, dtype=np.float32)

    def get_obs_size(self):
        return 2

    def get_state(self):
        return np.array([self.seed_value, self.t], dtype=np.float32)

    def get_state_size(self):
        return 2

    def get_avail_actions(self):
        return np.ones((2, 3), dtype=np.int32)

    def get_total_actions(self):
        return 3

    def get_rng_state(self):
        return None

    def set_rng_state(self, state):
        pass


def make_args(env="gymma", env_args=LBF_ARGS, **overrides):
    args = dict(env=env, env_args=dict(env_args), batch_size_run=1, test_nepisode=2, runner_log_interval=100,
                common_reward=True, reward_scalarisation="sum", render=False, device="cpu", act_on_cpu=True)
    args.update(overrides)
    return types.SimpleNamespace(**args)


def make_scheme(env_info, common_reward=True):
    n_agents, n_actions = env_info["n_agents"], env_info["n_actions"]
    scheme = {
        "state": {"vshape": env_info["state_shape"]},
        "obs": {"vshape": env_info["obs_shape"], "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (n_actions,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,) if common_reward else (n_agents,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    return scheme, {"agents": n_agents}, {"actions": ("actions_onehot", [OneHot(out_dim=n_actions)])}


def build_runner(name, args, mac_seed=0):
    runner = runner_REGISTRY[name](args, RecordingLogger())
    scheme, groups, preprocess = make_scheme(runner.get_env_info(), args.common_reward)
    runner.setup(scheme, groups, preprocess, RandomMAC(mac_seed))
    return runner


@pytest.fixture
def countdown_env(monkeypatch):
    monkeypatch.setitem(env_REGISTRY, "countdown", CountdownEnv)


@contextmanager
def time_limit(seconds):
    """Fails the test instead of hanging when the body takes longer than ``seconds`` (a hang guard
    with a wide margin: the errors it bounds arrive within a second on an idle machine)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"no result within {seconds} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def episode_lengths(batch):
    return (batch["filled"][:, :, 0].sum(dim=1) - 1).tolist()


def assert_layout(batch, lengths, real_terminal):
    """Slots 0..T filled (T = episode length), actions stored at every filled slot, one-hot
    consistent, and ``terminated`` set only at the last transition of a real terminal."""
    for i, (length, terminal) in enumerate(zip(lengths, real_terminal)):
        filled = batch["filled"][i, :, 0]
        assert filled[: length + 1].all() and not filled[length + 1:].any()
        expected = torch.zeros(batch.max_seq_length, dtype=torch.uint8)
        expected[length - 1] = int(terminal)
        assert torch.equal(batch["terminated"][i, :, 0], expected)
        actions = batch["actions"][i, : length + 1, :, 0]
        assert torch.equal(batch["actions_onehot"][i, : length + 1].argmax(-1), actions)
        assert batch["avail_actions"][i, : length + 1].gather(-1, actions.unsqueeze(-1)).all()
        assert not batch["actions_onehot"][i, length + 1:].any()


def batches_equal(a, b):
    return all(torch.equal(a[field], b[field]) for field in a.scheme)


# --- episode runner ------------------------------------------------------------------------------------
def test_episode_runner_lbf_batches_and_t_env():
    runner = build_runner("episode", make_args())
    lbf = runner.env._env.unwrapped
    total = 0
    for _ in range(3):
        batch = runner.run()
        assert batch["obs"].shape == (1, 51, 2, 12) and batch["state"].shape == (1, 51, 24)
        assert batch["reward"].shape == (1, 51, 1) and batch["avail_actions"].shape == (1, 51, 2, 6)
        [length] = episode_lengths(batch)
        assert_layout(batch, [length], [lbf.field.sum() == 0])
        assert torch.equal(batch["obs"][0, length], torch.from_numpy(runner.env.get_obs()))
        total += length
        assert runner.t_env == total
    runner.run(test_mode=True)
    assert runner.t_env == total
    runner.close_env()


def test_episode_runner_stores_a_real_terminal():
    runner = build_runner("episode", make_args("matrix_game", {"payoff": [[11, -30, 0], [-30, 7, 6], [0, 0, 5]],
                                                              "seed": 0}))
    payoff = torch.tensor([[11.0, -30, 0], [-30, 7, 6], [0, 0, 5]])
    for _ in range(5):
        batch = runner.run()
        assert batch["obs"].shape == (1, 2, 2, 1)
        assert_layout(batch, [1], [True])
        row, col = batch["actions"][0, 0, :, 0]
        assert batch["reward"][0, 0, 0] == payoff[row, col]
    assert runner.t_env == 5


def test_episode_runner_needs_batch_size_run_1():
    with pytest.raises(ValueError, match="batch_size_run"):
        runner_REGISTRY["episode"](make_args(batch_size_run=2), RecordingLogger())


def test_training_and_test_stats_are_logged(countdown_env):
    runner = build_runner("episode", make_args("countdown", {"seed": 1, "episode_limit": 10}, runner_log_interval=6))
    for _ in range(3):
        runner.run()  # 3-step episodes: logged after the first (t_env 3) and the third (t_env 9)
    stats = runner.logger.stats
    assert set(stats) == {"return_mean", "return_std", "ep_length_mean", "won_mean", "epsilon"}
    assert [t for t, _ in stats["return_mean"]] == [3, 9]
    assert stats["return_mean"][-1][1] == 3.0 and stats["ep_length_mean"][-1][1] == 3.0
    assert stats["won_mean"][-1][1] == 1.0 and stats["epsilon"][-1][1] == 0.25

    runner.run(test_mode=True)
    assert not any(key.startswith("test_") for key in stats)  # test_nepisode = 2 not reached yet
    runner.run(test_mode=True)
    assert {"test_return_mean", "test_return_std", "test_ep_length_mean", "test_won_mean"} <= set(stats)
    assert runner.last_test_return_mean == 3.0 and runner.t_env == 9


def test_per_agent_rewards_log_per_agent_returns(countdown_env):
    args = make_args("countdown", {"seed": 0, "episode_limit": 10}, common_reward=False, runner_log_interval=1)
    runner = build_runner("episode", args)
    batch = runner.run()
    assert batch["reward"].shape == (1, 11, 2)
    stats = runner.logger.stats
    assert {"total_return_mean", "total_return_std", "agent_0_return_mean", "agent_1_return_std"} <= set(stats)
    assert stats["total_return_mean"][-1][1] == 4.0 and stats["agent_1_return_mean"][-1][1] == 2.0


@pytest.mark.parametrize("name", ["episode", "parallel"])
def test_get_state_and_set_state_continue_the_episodes(name):
    batch_size = 1 if name == "episode" else 2
    runner = build_runner(name, make_args(batch_size_run=batch_size))
    runner.run()
    saved, mac_rng = runner.get_state(), runner.mac.generator.get_state()
    expected = runner.run()

    other_seed = dict(LBF_ARGS, seed=1234)
    resumed = build_runner(name, make_args(env_args=other_seed, batch_size_run=batch_size))
    resumed.set_state(saved)
    resumed.mac.generator.set_state(mac_rng)
    assert resumed.t_env == saved["t_env"]
    assert batches_equal(resumed.run(), expected)
    assert resumed.t_env == runner.t_env
    runner.close_env()
    resumed.close_env()


# --- parallel runner -----------------------------------------------------------------------------------
def test_parallel_runner_steps_envs_of_different_lengths_in_lockstep(countdown_env):
    runner = build_runner("parallel", make_args("countdown", {"seed": 0, "episode_limit": 4}, batch_size_run=4,
                                                runner_log_interval=1))
    try:
        batch = runner.run()
        lengths = [2, 3, 4, 4]  # seeds 0..3; the last would need 5 steps and times out at 4
        assert episode_lengths(batch) == lengths
        assert_layout(batch, lengths, [True, True, True, False])
        for env_id, length in enumerate(lengths):
            assert torch.equal(batch["state"][env_id, : length + 1],
                               torch.tensor([[env_id, t] for t in range(length + 1)], dtype=torch.float32))
        assert runner.t_env == sum(lengths)
        stats = runner.logger.stats
        assert stats["won_mean"][-1][1] == 0.75 and stats["ep_length_mean"][-1][1] == 3.25
        assert "episode_limit_mean" not in stats
    finally:
        runner.close_env()


def test_parallel_runner_seeds_envs_apart_and_reproduces_them():
    args = make_args(batch_size_run=3)
    first, second = build_runner("parallel", args), build_runner("parallel", args)
    try:
        batch = first.run()
        assert batch["obs"].shape == (3, 51, 2, 12)
        starts = batch["obs"][:, 0]
        assert not torch.equal(starts[0], starts[1]) and not torch.equal(starts[1], starts[2])
        lengths = episode_lengths(batch)
        assert_layout(batch, lengths, [length < 50 for length in lengths])
        assert batches_equal(second.run(), batch)
        assert first.env_step_seconds > 0
    finally:
        first.close_env()
        second.close_env()

    single = build_runner("episode", make_args(env_args=dict(LBF_ARGS, seed=LBF_ARGS["seed"] + 2)))
    assert torch.equal(single.run()["obs"][0, 0], starts[2])  # env i is seeded with seed + i


def test_worker_exception_raises_with_the_remote_traceback(countdown_env):
    runner = build_runner("parallel", make_args("countdown", {"seed": 0, "fail_at_step": 1}, batch_size_run=2))
    with time_limit(120), pytest.raises(RuntimeError, match=r"env worker \d raised") as error:
        runner.run()
    assert "boom: CountdownEnv failed on purpose" in str(error.value)
    assert "Traceback" in str(error.value)
    runner.close_env()


def test_killed_worker_raises_instead_of_hanging():
    runner = build_runner("parallel", make_args(batch_size_run=2))
    runner.run()
    worker = runner._workers[1]
    os.kill(worker.pid, signal.SIGKILL)
    with time_limit(120), pytest.raises(RuntimeError, match=r"env worker 1 \(pid \d+\) died: it was killed by signal 9"):
        runner.run()
    assert not worker.is_alive()
    runner.close_env()


# --- batch writer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["episode", "parallel"])
def test_update_path_collects_the_same_episodes(name, countdown_env):
    """Batches off the CPU are written with ``update``; that path must store what the fast one does."""
    args = make_args("countdown", {"seed": 0, "episode_limit": 4}, batch_size_run=1 if name == "episode" else 4)
    fast, slow = build_runner(name, args), build_runner(name, args)
    slow.writer.fast = False
    try:
        assert batches_equal(fast.run(), slow.run())
    finally:
        fast.close_env()
        slow.close_env()


@pytest.mark.parametrize("bs", [slice(None), [0, 2]])
def test_batch_writer_leaves_the_batch_as_update_would(bs):
    scheme, groups, preprocess = make_scheme({"n_agents": 2, "n_actions": 5, "obs_shape": 3, "state_shape": 4})
    rng = np.random.default_rng(0)
    n = 3 if bs == slice(None) else len(bs)
    data = {"state": rng.normal(size=(n, 4)).astype(np.float32),
            "obs": rng.normal(size=(n, 2, 3)).astype(np.float32),
            "avail_actions": rng.integers(0, 2, (n, 2, 5)).astype(np.int32),
            "actions": rng.integers(0, 5, (n, 2, 1)),
            "reward": rng.normal(size=(n, 1)).astype(np.float32),
            "terminated": np.ones((n, 1), dtype=np.uint8)}
    written, updated = (EpisodeBatch(scheme, groups, 3, 6, preprocess=preprocess) for _ in range(2))
    writer = BatchWriter(preprocess, "cpu")
    writer.attach(written)
    writer.write(data, bs, 4)
    updated.update(data, bs=bs, ts=4)
    assert batches_equal(written, updated) and written["actions_onehot"].sum() == 2 * n
