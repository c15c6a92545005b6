"""Pure-speed changes to SALE-MB keep the function: after a few updates on fixed batches every
parameter and Adam moment is bitwise identical to the previous implementation, kept here (and
only here) as ``previous_path``:
- the Q head added its per-action weight transposed (a non-contiguous broadcast operand);
- imagination ran the live agents, their greedy choice and the state decoder at its last step
  on every slot, although only imagined TD reads those, and only at the slots it starts from;
- Adam stepped parameter by parameter (now ``foreach``);
- the target agents' Q head ran for every action over the real episodes, although double Q reads
  them only at the live agents' greedy actions (now it runs for those alone).
With ``img_epsilon > 0`` the last step's exploratory draws, which nothing read, are gone, so the
random stream after imagination differs; that case is therefore not compared here.

One pure-speed change cannot be bitwise: the SALE encoder's per-action features now add a dense
copy of the transposed action weight, so the layer after them is one matrix product over all
(row, action) pairs instead of a batched product per row (BLAS sums in another order). It is
checked against the transposed operand to float32 rounding, and by what makes it fast.
"""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from learners.sale_mb_learner import SALEMBLearner
from learners.sale_model_learner import SALEModelLearner, imagined_steps
from modules.agents.sale_agent import SALEAgent, StateActionEncoder
from test_sale_mb import make_batch, make_learner
from utils.latent_utils import avg_l1_norm
from utils.td_utils import greedy_next_qs


def previous_q_values(self, h, obs, actions=None):
    if actions is not None:  # every action, then the chosen ones
        return torch.gather(previous_q_values(self, h, obs), -1, actions)
    encoder = self.fixed_target_encoder if self.read_target_encoder else self.fixed_encoder
    z_o = encoder.embed(obs)
    action_features = encoder.action_features(z_o)
    folded_weight = self.q_state_action.weight @ encoder.g_out.weight
    folded_bias = self.q_state_action(encoder.g_out.bias)
    shared = self.q_hidden(avg_l1_norm(self.hidden_proj(h))) + self.q_state(z_o) + folded_bias
    per_action = F.linear(action_features, folded_weight) + self.q_action.weight.t()
    q = self.q_out(F.elu(shared.unsqueeze(-2) + per_action)).squeeze(-1)
    return q if self.q_linear is None else q + self.q_linear(h)


@torch.no_grad()
def previous_roll(self, mac, start, first_actions, hidden):
    horizon = self.args.rollout_depth
    data = {"obs": start.new_zeros(start.shape[0], horizon + 1, self.n_agents, self.world_model.obs_dim),
            "actions_onehot": start.new_zeros(start.shape[0], horizon + 1, self.n_agents, self.n_actions)}
    data["avail_actions"] = torch.zeros_like(data["actions_onehot"])
    steps = imagined_steps(self.scheme, data)
    mac.hidden_states = hidden
    latent, actions = start, first_actions
    out = {key: [] for key in ("latents", "rewards", "continuations", "avail", "states", "greedy_qs")}
    out["actions"] = [actions]
    for k in range(1, horizon + 1):
        actions_onehot = F.one_hot(actions, self.n_actions).float()
        data["actions_onehot"][:, k - 1] = actions_onehot
        step = self.world_model.imagine_step(latent, actions_onehot, self.joint_sale, self.args.rollout_noise)
        latent = step["latent"]
        data["obs"][:, k], data["avail_actions"][:, k] = step["obs"], step["avail"]
        qs = mac.forward(steps, t=k)
        actions = self.policy_actions(qs, step["avail"])
        for key, value in (("latents", latent), ("rewards", step["reward"]),
                           ("continuations", step["continuation"]), ("actions", actions),
                           ("avail", step["avail"]), ("states", self.decode_state(latent)),
                           ("greedy_qs", qs)):
            if value is not None:
                out[key].append(value)
    rollout = {key: torch.stack(values, dim=1) if values else None for key, values in out.items()}
    rollout.update(data)
    return rollout


def previous_imagined_td_loss(self, rollout, agent_qs, hidden, target_hidden, context, start_mask,
                              reward_range=None):
    assert reward_range is None  # clamp_imagined_rewards came later; its default is off
    horizon = self.args.rollout_depth
    batch_size, slots = agent_qs.shape[:2]
    steps = imagined_steps(self.model.scheme, {
        field: rollout[field].reshape(batch_size * slots, *rollout[field].shape[2:])
        for field in ("obs", "actions_onehot", "avail_actions")})
    rows = batch_size * slots * self.n_agents
    self.mac.hidden_states = hidden.detach().reshape(rows, -1)
    self.target_mac.hidden_states = target_hidden.reshape(rows, -1)
    live_qs, target_qs = [agent_qs], []
    for k in range(1, horizon + 1):
        if k < horizon:
            live_qs.append(self.mac.forward(steps, t=k).view(agent_qs.shape))
        with torch.no_grad():
            target_qs.append(self.target_mac.forward(steps, t=k).view(agent_qs.shape))
    imagined_context = self.mixer.context(state=rollout["states"],
                                          sale=self.model.embed_sale(rollout["latents"]),
                                          foresight=rollout["foresight"][:, :, 1:])
    contexts = torch.cat([context.unsqueeze(2), imagined_context], dim=2)
    chosen = torch.gather(torch.stack(live_qs, dim=2), 4,
                          rollout["actions"][:, :, :horizon].unsqueeze(4)).squeeze(4)
    q_tot = self.mixer(chosen, contexts[:, :, :horizon])
    with torch.no_grad():
        next_qs = greedy_next_qs(rollout["greedy_qs"], torch.stack(target_qs, dim=2),
                                 rollout["avail"], self.args.double_q)
        next_q_tot = self._clip(self.target_mixer(next_qs, contexts[:, :, 1:]))
        continuations = rollout["continuations"]
        targets = rollout["rewards"] + self.args.gamma * continuations * next_q_tot
        reach = torch.cumprod(torch.cat([torch.ones_like(continuations[:, :, :1]),
                                         continuations[:, :, :-1]], dim=2), dim=2)
        weights = reach * start_mask.unsqueeze(2)
    count = (start_mask.sum() * horizon).clamp_min(1)
    return (weights * (q_tot - targets).pow(2)).sum() / count


@contextlib.contextmanager
def previous_path(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(SALEAgent, "q_values", previous_q_values)
        patch.setattr(SALEModelLearner, "_roll", previous_roll)
        patch.setattr(SALEMBLearner, "_imagined_td_loss", previous_imagined_td_loss)
        yield


# The settings the previous path ran with where sale_mb.yaml's defaults have changed since:
# the fixed encoders refreshed every 250 updates (now with the target copy, see docs/method.md).
PREVIOUS_DEFAULTS = dict(sale_refresh_interval=250)


def trained(overrides, updates=3):
    learner = make_learner(seed=1, **PREVIOUS_DEFAULTS, **overrides)
    for update in range(updates):
        torch.manual_seed(100 + update)
        learner.train(make_batch(seed=update), t_env=update, episode_num=update)
    return learner


def previous_adam(learner):
    for optimiser in learner.optimisers:
        group = optimiser.adam.param_groups[0]
        optimiser.adam = torch.optim.Adam(group["params"], lr=group["lr"])  # per-parameter loop


def state_of(learner):
    modules = {"agent": learner.mac.agent, "target_agent": learner.target_mac.agent,
               "mixer": learner.mixer, "target_mixer": learner.target_mixer, **learner.model.parts()}
    state = {f"{name}.{key}": value for name, module in modules.items()
             for key, value in module.state_dict().items()}
    for index, optimiser in enumerate(learner.optimisers):
        for param, moments in optimiser.adam.state_dict()["state"].items():
            state.update({f"adam{index}.{param}.{key}": value for key, value in moments.items()})
    return state


@pytest.mark.parametrize("overrides", [
    dict(),                                         # imagined TD from every slot
    dict(imagination_starts=2),                     # from sampled slots: the last step at those only
    dict(alg="sale_mb_no_state"),                   # no state decoder
    dict(rollout_depth=1),                          # the only imagined step is the last one
    dict(rollout_noise=0.1, value_clip=False),
])
def test_parameters_are_bitwise_those_of_the_previous_path(monkeypatch, overrides):
    with previous_path(monkeypatch):
        learner = make_learner(seed=1, **PREVIOUS_DEFAULTS, **overrides)
        previous_adam(learner)
        for update in range(3):
            torch.manual_seed(100 + update)
            learner.train(make_batch(seed=update), t_env=update, episode_num=update)
        before = state_of(learner)
    after = state_of(trained(overrides))
    assert before.keys() == after.keys()
    differing = [key for key in before if not torch.equal(before[key], after[key])]
    assert not differing, differing
    assert any(torch.is_tensor(value) and value.abs().sum() > 0 for key, value in after.items()
               if key.startswith("adam1"))  # the model group's Adam took steps: a real comparison


def previous_action_features(self, z, actions=None):
    rows = self.g_action.weight.t()   # a transposed view
    return F.elu(self.g_state(z).unsqueeze(-2) + (rows if actions is None else rows[actions]))


def test_the_dense_action_weight_changes_only_the_rounding(monkeypatch):
    after = state_of(trained({}))
    with monkeypatch.context() as patch:
        patch.setattr(StateActionEncoder, "action_features", previous_action_features)
        before = state_of(trained({}))
    assert before.keys() == after.keys()
    for key in before:   # measured: at most 3e-8 apart after three updates
        torch.testing.assert_close(after[key], before[key], rtol=1e-5, atol=1e-6, msg=key)


def batched_products(agent, rows=64):
    """The aten::bmm calls of one forward pass of the agent's Q head over ``rows`` rows."""
    inputs, hidden = torch.randn(rows, agent.fc1.in_features), torch.randn(rows, agent.hidden_dim)
    with torch.no_grad(), torch.profiler.profile() as profiler:
        agent(inputs, hidden)
    return [event for event in profiler.events() if event.name == "aten::bmm"]


def test_the_q_head_runs_no_batched_matrix_product(monkeypatch):
    """The transposed operand made the layer after the per-action features a batched product (one
    small matrix product per row, ~4x slower for LBF-sized batches: docs/benchmarks.md)."""
    agent = make_learner().mac.agent
    assert not batched_products(agent)
    with monkeypatch.context() as patch:
        patch.setattr(StateActionEncoder, "action_features", previous_action_features)
        assert batched_products(agent)   # what this test guards against


def test_the_target_q_head_runs_only_at_the_greedy_actions(monkeypatch):
    """Over the real episodes the per-action features run for every action once (the live
    agents) and for one action per row once (the target agents, at the live greedy actions)."""
    learner, batch = make_learner(seed=1), make_batch(seed=0)
    shapes = []
    original = StateActionEncoder.action_features

    def recording(self, z, actions=None):
        out = original(self, z, actions)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(StateActionEncoder, "action_features", recording)
    learner.train(batch, t_env=0, episode_num=0)
    rows = batch.batch_size * learner.n_agents
    episodes = [shape for shape in shapes if shape[:2] == (rows, batch.max_t_filled())]
    assert [shape[2] for shape in episodes] == [learner.args.n_actions, 1]
