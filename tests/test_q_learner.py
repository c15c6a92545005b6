"""QLearner on hand-made batches (targets, masks, target updates, checkpoints) and the shared
maths in utils/rl_utils.py on known inputs."""
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from components.episode_buffer import EpisodeBatch
from components.transforms import OneHot
from controllers import REGISTRY as mac_REGISTRY
from learners import REGISTRY as learner_REGISTRY
from modules.agents import REGISTRY as agent_REGISTRY
from utils import rl_utils

N_AGENTS, N_ACTIONS, GAMMA = 2, 3, 0.9


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats.setdefault(key, []).append((t, value))


class TableAgent(nn.Module):
    """Q(o, .) = W o: with one-hot observations each (episode, step, agent) reads its own column."""

    def __init__(self, input_shape, args):
        super().__init__()
        self.fc = nn.Linear(input_shape, args.n_actions, bias=False)

    def init_hidden(self):
        return self.fc.weight.new_zeros(1, 1)

    def forward(self, inputs, hidden_state):
        return self.fc(inputs), inputs.new_zeros(inputs.shape[0], 1)


def make_args(**overrides):
    args = dict(n_agents=N_AGENTS, n_actions=N_ACTIONS, state_shape=5, obs_shape=4, device="cpu",
                hidden_dim=8, use_rnn=True, obs_agent_id=True, obs_last_action=True, agent="rnn",
                mac="basic_mac", mixer=None, mixing_embed_dim=8, hypernet_layers=2,
                hypernet_embed=8, lr=5e-3, gamma=GAMMA, double_q=True, grad_norm_clip=10,
                target_update_interval_or_tau=200, standardise_rewards=False,
                standardise_returns=False, common_reward=True, learner_log_interval=0,
                agent_output_type="q", action_selector="epsilon_greedy", epsilon_start=1.0,
                epsilon_finish=0.05, epsilon_anneal_time=100, evaluation_epsilon=0.0,
                batch_size=3)
    args.update(overrides)
    return SimpleNamespace(**args)


def make_scheme(obs_dim, state_dim, reward_dim=1):
    return {"state": {"vshape": state_dim},
            "obs": {"vshape": obs_dim, "group": "agents"},
            "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
            "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
            "reward": {"vshape": (reward_dim,)},
            "terminated": {"vshape": (1,), "dtype": torch.uint8}}


def new_batch(scheme, batch_size, steps):
    return EpisodeBatch(scheme, {"agents": N_AGENTS}, batch_size, steps,
                        preprocess={"actions": ("actions_onehot", [OneHot(N_ACTIONS)])})


# --- a hand-made batch with a table agent ---------------------------------------------------------
# Episode 0 ends in a real terminal at step 2 (slot 3 holds its last observation), episode 1 times
# out after 4 steps (not terminal: it bootstraps from slot 4, its last slot), episode 2 terminates
# at step 0 and episode 3 times out after 5 steps. Slot 6 is padding everywhere, so the learner
# truncates the batch to 6 slots (5 transitions).
EPISODES = [dict(transitions=3, terminal=True), dict(transitions=4, terminal=False),
            dict(transitions=1, terminal=True), dict(transitions=5, terminal=False)]
B, T = len(EPISODES), 7
OBS_DIM = B * T * N_AGENTS


def column(b, t, i):
    return (b * T + t) * N_AGENTS + i


def hand_made_batch(common_reward):
    generator = torch.Generator().manual_seed(4)
    reward_dim = 1 if common_reward else N_AGENTS
    batch = new_batch(make_scheme(OBS_DIM, 3, reward_dim), B, T)
    obs = torch.eye(OBS_DIM).view(B, T, N_AGENTS, OBS_DIM)
    filled = torch.zeros(B, T, 1, dtype=torch.long)
    terminated = torch.zeros(B, T, 1, dtype=torch.uint8)
    avail = torch.zeros(B, T, N_AGENTS, N_ACTIONS, dtype=torch.int)
    for b, episode in enumerate(EPISODES):
        length = episode["transitions"]
        filled[b, :length + 1] = 1
        terminated[b, length - 1] = int(episode["terminal"])
        slots = torch.rand(length + 1, N_AGENTS, N_ACTIONS, generator=generator) < 0.7
        slots[..., 0] |= ~slots.any(-1)
        avail[b, :length + 1] = slots.int()
    actions = torch.randint(N_ACTIONS, (B, T, N_AGENTS, 1), generator=generator)
    rewards = torch.randint(-2, 4, (B, T, reward_dim), generator=generator).float()
    batch.update({"obs": obs, "state": torch.randn(B, T, 3, generator=generator),
                  "avail_actions": avail, "actions": actions * filled.unsqueeze(-1),
                  "reward": rewards * filled, "terminated": terminated, "filled": filled},
                 ts=slice(None))
    return batch


def table_weights():
    """Integer Q-tables for the live and the target network."""
    generator = torch.Generator().manual_seed(5)
    return (torch.randint(-5, 6, (N_ACTIONS, OBS_DIM), generator=generator).float(),
            torch.randint(-5, 6, (N_ACTIONS, OBS_DIM), generator=generator).float())


def hand_computed_targets(batch, w_live, w_target, mixed, double_q):
    """y[b, t, k] by explicit loops (k: agent, or 0 for a mixed team value), and the step mask."""
    avail, actions = batch["avail_actions"], batch["actions"]
    rewards, terminated = batch["reward"], batch["terminated"]
    targets = torch.zeros(B, T - 2, 1 if mixed else N_AGENTS)
    mask = torch.zeros(B, T - 2)
    for b, episode in enumerate(EPISODES):
        for t in range(T - 2):
            mask[b, t] = float(t < episode["transitions"])
            next_values = []
            for i in range(N_AGENTS):
                live = w_live[:, column(b, t + 1, i)].tolist()
                target = w_target[:, column(b, t + 1, i)].tolist()
                allowed = [a for a in range(N_ACTIONS) if avail[b, t + 1, i, a]] or [0]
                chooser = live if double_q else target
                best = max(allowed, key=lambda a: chooser[a])
                next_values.append(target[best])
            alive = 1.0 - float(terminated[b, t, 0])
            for k in range(targets.shape[-1]):
                reward = rewards[b, t, min(k, rewards.shape[-1] - 1)]
                bootstrap = sum(next_values) if mixed else next_values[k]
                targets[b, t, k] = reward + GAMMA * alive * bootstrap
    return targets, mask, actions


@pytest.mark.parametrize("mixer, double_q, common_reward", [
    (None, True, True), (None, False, True), (None, True, False), ("vdn", True, True)])
def test_td_targets_equal_hand_computed_values(monkeypatch, mixer, double_q, common_reward):
    monkeypatch.setitem(agent_REGISTRY, "table", TableAgent)
    torch.manual_seed(0)
    batch = hand_made_batch(common_reward)
    args = make_args(agent="table", obs_agent_id=False, obs_last_action=False, mixer=mixer,
                     double_q=double_q, common_reward=common_reward, grad_norm_clip=1e9)
    mac = mac_REGISTRY["basic_mac"](batch.scheme, {"agents": N_AGENTS}, args)
    logger = RecordingLogger()
    learner = learner_REGISTRY["q_learner"](mac, batch.scheme, logger, args)
    w_live, w_target = table_weights()
    with torch.no_grad():
        learner.mac.agent.fc.weight.copy_(w_live)
        learner.target_mac.agent.fc.weight.copy_(w_target)

    learner.train(batch, t_env=0, episode_num=0)

    mixed = mixer is not None
    expected, mask, actions = hand_computed_targets(batch, w_live, w_target, mixed, double_q)
    # The gradient of the masked mean squared TD error w.r.t. the weight read for Q(o, u) is
    # 2 (Q - y) mask / n_valid: read the learner's targets back from it.
    grad = learner.mac.agent.fc.weight.grad
    n_valid = mask.sum() * (1 if mixed else N_AGENTS)
    q_taken = torch.zeros(B, T - 2, N_AGENTS)
    grad_taken = torch.zeros(B, T - 2, N_AGENTS)
    for b in range(B):
        for t in range(T - 2):
            for i in range(N_AGENTS):
                u, c = actions[b, t, i, 0], column(b, t, i)
                q_taken[b, t, i], grad_taken[b, t, i] = w_live[u, c], grad[u, c]
    q = q_taken.sum(-1, keepdim=True) if mixed else q_taken
    recovered = q - grad_taken[..., :q.shape[-1]] * n_valid / 2

    valid = mask.bool()
    torch.testing.assert_close(recovered[valid], expected[valid])
    assert (grad_taken[~valid] == 0).all()  # padding and post-terminal steps are masked out
    expected_loss = ((q - expected) ** 2)[valid].mean()
    assert logger.stats["loss"][0][1] == pytest.approx(expected_loss.item(), rel=1e-5)
    assert set(logger.stats) >= {"loss", "grad_norm", "td_error_abs", "q_taken_mean",
                                 "target_mean"}


def test_hand_made_batch_exercises_every_case():
    """The batch above holds a terminal, a time-out, padding, and (for the seeds used) steps where
    double Q picks another action than the target net and where the live net's favourite next
    action is unavailable."""
    batch = hand_made_batch(True)
    w_live, w_target = table_weights()
    double, single = (hand_computed_targets(batch, w_live, w_target, False, flag)[0]
                      for flag in (True, False))
    _, mask, _ = hand_computed_targets(batch, w_live, w_target, False, True)
    assert (double != single)[mask.bool()].any()
    next_q = w_live.t().reshape(B, T, N_AGENTS, N_ACTIONS)[:, 1:T - 1]
    favourite = next_q.argmax(-1, keepdim=True)
    unavailable = batch["avail_actions"][:, 1:T - 1].gather(-1, favourite).squeeze(-1) == 0
    assert (unavailable & mask.bool().unsqueeze(-1)).any()
    assert batch.max_t_filled() == T - 1


@pytest.mark.parametrize("mixer", [None, "qmix"])
def test_standardisers_see_only_valid_steps(mixer):
    batch = hand_made_batch(True)
    learner = make_learner(0, mixer=mixer, obs_agent_id=False, obs_last_action=False,
                           standardise_rewards=True, standardise_returns=True,
                           state_shape=3, scheme=batch.scheme)
    learner.train(batch, t_env=0, episode_num=0)
    _, mask, _ = hand_computed_targets(batch, *table_weights(), False, True)
    valid_rewards = batch["reward"][:, :T - 2][mask.bool()]
    assert learner.rew_ms.mean.item() == pytest.approx(valid_rewards.mean().item(), rel=1e-3)
    assert learner.ret_ms.mean.shape == ((1,) if mixer else (N_AGENTS,))
    assert torch.isfinite(torch.tensor(learner.logger.stats["loss"][0][1]))


def test_mixers_require_a_common_reward():
    batch = new_batch(make_scheme(4, 5, N_AGENTS), 2, 4)
    args = make_args(mixer="qmix", common_reward=False)
    mac = mac_REGISTRY["basic_mac"](batch.scheme, {"agents": N_AGENTS}, args)
    with pytest.raises(ValueError, match="common_reward"):
        learner_REGISTRY["q_learner"](mac, batch.scheme, RecordingLogger(), args)
    with pytest.raises(ValueError, match="unknown mixer"):
        learner_REGISTRY["q_learner"](mac, batch.scheme, RecordingLogger(),
                                      make_args(mixer="qmixx"))


# --- learners on random episodes ----------------------------------------------------------------
def random_batch(seed=0, batch_size=4, steps=7, gamma_zero=False):
    generator = torch.Generator().manual_seed(seed)
    batch = new_batch(make_scheme(4, 5), batch_size, steps)
    avail = torch.ones(batch_size, steps, N_AGENTS, N_ACTIONS, dtype=torch.int)
    avail[:, :, :, 2] = (torch.rand(batch_size, steps, N_AGENTS, generator=generator) < 0.5).int()
    actions = torch.randint(2, (batch_size, steps, N_AGENTS, 1), generator=generator)
    batch.update({"obs": torch.randn(batch_size, steps, N_AGENTS, 4, generator=generator),
                  "state": torch.randn(batch_size, steps, 5, generator=generator),
                  "avail_actions": avail, "actions": actions,
                  "reward": (actions.sum(2) == 2).float() * 3 - actions[:, :, 0].float(),
                  "terminated": torch.zeros(batch_size, steps, 1)}, ts=slice(None))
    return batch


def make_learner(seed, scheme=None, **overrides):
    torch.manual_seed(seed)
    scheme = random_batch().scheme if scheme is None else scheme
    args = make_args(**overrides)
    mac = mac_REGISTRY[args.mac](scheme, {"agents": N_AGENTS}, args)
    return learner_REGISTRY["q_learner"](mac, scheme, RecordingLogger(), args)


def params_of(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("network", ["target_mac", "target_mixer"])
def test_targets_come_from_the_target_networks(network):
    batch = random_batch()
    plain, perturbed = make_learner(0, mixer="qmix"), make_learner(0, mixer="qmix")
    with torch.no_grad():
        for param in getattr(perturbed, network).parameters():
            param.add_(0.5)
    plain.train(batch, t_env=0, episode_num=0)
    perturbed.train(batch, t_env=0, episode_num=0)
    assert plain.logger.stats["target_mean"][0][1] != perturbed.logger.stats["target_mean"][0][1]
    assert plain.logger.stats["q_taken_mean"] == perturbed.logger.stats["q_taken_mean"]


def test_hard_target_updates_every_interval():
    learner = make_learner(0, mixer="qmix", target_update_interval_or_tau=3)
    batch = random_batch()
    for update in range(1, 7):
        before = params_of(learner.target_mixer) + params_of(learner.target_mac)
        learner.train(batch, t_env=update, episode_num=update)
        after = params_of(learner.target_mixer) + params_of(learner.target_mac)
        live = params_of(learner.mixer) + params_of(learner.mac)
        if update % 3 == 0:
            assert all(torch.equal(a, b) for a, b in zip(after, live))
        else:
            assert all(torch.equal(a, b) for a, b in zip(after, before))
            assert not all(torch.equal(a, b) for a, b in zip(after, live))


def test_soft_target_updates_every_step():
    tau = 0.25
    learner = make_learner(0, mixer="qmix", target_update_interval_or_tau=tau)
    batch = random_batch()
    for update in range(3):
        before = params_of(learner.target_mixer) + params_of(learner.target_mac)
        learner.train(batch, t_env=update, episode_num=update)
        after = params_of(learner.target_mixer) + params_of(learner.target_mac)
        live = params_of(learner.mixer) + params_of(learner.mac)
        for new, old, source in zip(after, before, live):
            torch.testing.assert_close(new, (1 - tau) * old + tau * source)


@pytest.mark.parametrize("mixer, mac, agent", [("qmix", "basic_mac", "rnn"),
                                               (None, "non_shared_mac", "rnn_ns")])
def test_save_then_load_resumes_exactly(tmp_path, mixer, mac, agent):
    batch = random_batch()
    options = dict(mixer=mixer, mac=mac, agent=agent, standardise_rewards=True,
                   target_update_interval_or_tau=2)
    saved = make_learner(0, **options)
    for update in range(3):
        saved.train(batch, t_env=10 * update, episode_num=update)
    saved.save_models(str(tmp_path))
    expected_files = {"agent.th", "opt.th", "target_agent.th", "learner_state.th"}
    if mixer:
        expected_files |= {"mixer.th", "target_mixer.th"}
    assert set(os.listdir(tmp_path)) == expected_files

    loaded = make_learner(1, **options)
    loaded.load_models(str(tmp_path))
    torch.testing.assert_close(loaded.mac.forward_all(batch), saved.mac.forward_all(batch))
    torch.testing.assert_close(loaded.target_mac.forward_all(batch),
                               saved.target_mac.forward_all(batch))
    assert not torch.allclose(loaded.target_mac.forward_all(batch), loaded.mac.forward_all(batch))
    assert (loaded.training_steps, loaded.last_target_update_step, loaded.log_stats_t) == \
        (saved.training_steps, saved.last_target_update_step, saved.log_stats_t)
    torch.testing.assert_close(loaded.rew_ms.mean, saved.rew_ms.mean)
    saved_opt, loaded_opt = saved.optimiser.state_dict(), loaded.optimiser.state_dict()
    for key, state in saved_opt["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(loaded_opt["state"][key][name], value)

    # one more update on each gives identical networks: the resume is exact
    saved.train(batch, t_env=100, episode_num=3)
    loaded.train(batch, t_env=100, episode_num=3)
    for a, b in zip(params_of(saved.mac) + params_of(saved.target_mac),
                    params_of(loaded.mac) + params_of(loaded.target_mac)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["agent.th", "mixer.th", "opt.th", "target_agent.th"])
def test_a_damaged_checkpoint_file_is_named(tmp_path, name):
    """A truncated file stops the load with an error naming that file; a missing required one
    names what is missing."""
    saved = make_learner(0, mixer="qmix")
    saved.save_models(str(tmp_path))
    with open(tmp_path / name, "r+b") as f:
        f.truncate(10)
    with pytest.raises(RuntimeError, match=f"{name} is damaged"):
        make_learner(1, mixer="qmix").load_models(str(tmp_path))
    os.remove(tmp_path / name)
    if name != "target_agent.th":  # optional: an EPyMARL checkpoint lacks it
        with pytest.raises(FileNotFoundError, match=f"has no {name}"):
            make_learner(1, mixer="qmix").load_models(str(tmp_path))


def test_epymarl_checkpoint_without_targets_copies_live_nets(tmp_path):
    saved = make_learner(0, mixer="qmix")
    saved.train(random_batch(), t_env=0, episode_num=0)
    saved.save_models(str(tmp_path))
    for name in ("target_agent.th", "target_mixer.th", "learner_state.th"):
        os.remove(tmp_path / name)
    loaded = make_learner(1, mixer="qmix")
    loaded.load_models(str(tmp_path))
    for a, b in zip(params_of(loaded.target_mac) + params_of(loaded.target_mixer),
                    params_of(saved.mac) + params_of(saved.mixer)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mixer, use_rnn", [("qmix", False), ("vdn", True), (None, True)])
def test_loss_falls_when_targets_are_the_rewards(mixer, use_rnn):
    """gamma = 0 turns Q-learning into regression on the rewards; the loss must fall a lot."""
    learner = make_learner(0, mixer=mixer, use_rnn=use_rnn, gamma=0.0, lr=1e-2)
    batch = random_batch(steps=5)
    for update in range(150):
        learner.train(batch, t_env=update, episode_num=update)
    losses = [value for _, value in learner.logger.stats["loss"]]
    assert losses[-1] < 0.1 * losses[0]


# --- utils/rl_utils.py ---------------------------------------------------------------------------
def row(*values):
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1)


def test_td_targets_and_step_mask():
    targets = rl_utils.build_td_targets(row(1, 2), row(0, 1), row(10, 20), 0.5)
    torch.testing.assert_close(targets, row(6, 2))
    terminal_then_padding = rl_utils.valid_step_mask(row(1, 1, 1, 1, 0, 0), row(0, 0, 1, 0, 0))
    torch.testing.assert_close(terminal_then_padding, row(1, 1, 1, 0, 0))
    time_out_then_padding = rl_utils.valid_step_mask(row(1, 1, 1, 0, 0, 0), row(0, 0, 0, 0, 0))
    torch.testing.assert_close(time_out_then_padding, row(1, 1, 0, 0, 0))


def test_n_step_returns_on_known_inputs():
    rewards, terminated, next_values = row(1, 2, 3, 4), row(0, 0, 1, 0), row(10, 20, 30, 40)
    returns = rl_utils.build_n_step_returns(rewards, terminated, next_values, 0.5, 2)
    torch.testing.assert_close(returns, row(1 + 1 + 0.25 * 20, 2 + 1.5, 3, 4 + 0.5 * 40))
    masked = rl_utils.build_n_step_returns(rewards, row(0, 0, 0, 0), next_values, 0.5, 2,
                                           mask=row(1, 1, 0, 0))
    torch.testing.assert_close(masked, row(1 + 1 + 0.25 * 20, 2 + 0.5 * 20, 0, 0))


def test_n_step_and_lambda_returns_reduce_to_known_cases():
    generator = torch.Generator().manual_seed(0)
    rewards, next_values = torch.randn(3, 6, 2, generator=generator), torch.randn(3, 6, 2)
    terminated = (torch.rand(3, 6, 1, generator=generator) < 0.3).float()
    one_step = rl_utils.build_td_targets(rewards, terminated, next_values, 0.9)
    torch.testing.assert_close(
        rl_utils.build_n_step_returns(rewards, terminated, next_values, 0.9, 1), one_step)
    torch.testing.assert_close(
        rl_utils.build_lambda_returns(rewards, terminated, next_values, 0.9, 0.0), one_step)
    torch.testing.assert_close(
        rl_utils.build_lambda_returns(rewards, terminated, next_values, 0.9, 1.0),
        rl_utils.build_n_step_returns(rewards, terminated, next_values, 0.9, 6))


def test_lambda_returns_on_known_inputs():
    returns = rl_utils.build_lambda_returns(row(1, 2), row(0, 0), row(10, 20), 0.5, 0.5)
    torch.testing.assert_close(returns, row(1 + 0.5 * (0.5 * 10 + 0.5 * 12), 2 + 0.5 * 20))
    masked = rl_utils.build_lambda_returns(row(1, 2), row(0, 0), row(10, 20), 0.5, 0.5,
                                           mask=row(1, 0))
    torch.testing.assert_close(masked[:, :1], row(1 + 0.5 * 10))


def test_masked_mean_and_mse():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 2)
    mask = torch.tensor([1.0, 0.0]).view(1, 2, 1)
    assert rl_utils.masked_mean(x, mask).item() == pytest.approx(1.5)
    assert rl_utils.masked_mean(x, torch.zeros(1, 2, 1)).item() == 0.0
    assert rl_utils.masked_mse(x, torch.zeros_like(x), mask).item() == pytest.approx(2.5)


def test_hard_soft_and_scheduled_target_updates():
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    old = params_of(target)
    rl_utils.soft_update(target, source, 0.1)
    for new, before, src in zip(params_of(target), old, params_of(source)):
        torch.testing.assert_close(new, 0.9 * before + 0.1 * src)
    rl_utils.hard_update(target, source)
    assert all(torch.equal(a, b) for a, b in zip(params_of(target), params_of(source)))

    target = nn.Linear(3, 2)
    last = 0
    copied_at = []
    for step in range(1, 10):
        new_last = rl_utils.update_targets([(target, source)], 4, step, last)
        if new_last != last:
            copied_at.append(step)
        last = new_last
    assert copied_at == [4, 8]
    old = params_of(target)
    assert rl_utils.update_targets([(target, source)], 0.5, 3, 1) == 1
    torch.testing.assert_close(params_of(target)[0], 0.5 * old[0] + 0.5 * params_of(source)[0])
