"""Property tests for agents, mixers and controllers (MACs)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from components.episode_buffer import EpisodeBatch
from components.transforms import OneHot
from components.policy_distributions import CategoricalPolicy, GaussianPolicy
from controllers import REGISTRY as mac_REGISTRY
from modules.agents import REGISTRY as agent_REGISTRY
from modules.critics import REGISTRY as critic_REGISTRY
from modules.mixers import REGISTRY as mixer_REGISTRY

N_AGENTS, N_ACTIONS, OBS_DIM, STATE_DIM = 3, 5, 4, 7


def make_args(**overrides):
    args = dict(n_agents=N_AGENTS, n_actions=N_ACTIONS, state_shape=STATE_DIM, obs_shape=OBS_DIM,
                hidden_dim=16, use_rnn=True, obs_agent_id=True, obs_last_action=True,
                agent="rnn", mac="basic_mac", agent_output_type="q", mask_before_softmax=True,
                action_selector="epsilon_greedy", epsilon_start=0.0, epsilon_finish=0.0,
                epsilon_anneal_time=1, evaluation_epsilon=0.0, mixing_embed_dim=8,
                hypernet_layers=2, hypernet_embed=12)
    args.update(overrides)
    return SimpleNamespace(**args)


def make_batch(batch_size=4, steps=6, seed=0):
    """Random episodes; each agent has a random non-empty set of available actions."""
    generator = torch.Generator().manual_seed(seed)
    scheme = {"state": {"vshape": STATE_DIM},
              "obs": {"vshape": OBS_DIM, "group": "agents"},
              "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
              "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
              "reward": {"vshape": (1,)},
              "terminated": {"vshape": (1,), "dtype": torch.uint8}}
    batch = EpisodeBatch(scheme, {"agents": N_AGENTS}, batch_size, steps,
                         preprocess={"actions": ("actions_onehot", [OneHot(N_ACTIONS)])})
    avail = torch.rand(batch_size, steps, N_AGENTS, N_ACTIONS, generator=generator) < 0.6
    avail[..., 0] |= ~avail.any(-1)
    batch.update({"state": torch.randn(batch_size, steps, STATE_DIM, generator=generator),
                  "obs": torch.randn(batch_size, steps, N_AGENTS, OBS_DIM, generator=generator),
                  "avail_actions": avail.int(),
                  "actions": torch.randint(N_ACTIONS, (batch_size, steps, N_AGENTS, 1),
                                           generator=generator)}, ts=slice(None))
    return batch


def make_mac(mac="basic_mac", **overrides):
    agent = "rnn_ns" if mac == "non_shared_mac" else "rnn"
    args = make_args(mac=mac, agent=agent, **overrides)
    return mac_REGISTRY[mac](make_batch().scheme, {"agents": N_AGENTS}, args)


# --- mixers --------------------------------------------------------------------------------------
def test_vdn_is_the_sum_of_agent_qs():
    agent_qs = torch.randn(3, 5, N_AGENTS)
    q_tot = mixer_REGISTRY["vdn"](make_args())(agent_qs, torch.randn(3, 5, STATE_DIM))
    assert q_tot.shape == (3, 5, 1)
    torch.testing.assert_close(q_tot.squeeze(-1), agent_qs.sum(-1))


@pytest.mark.parametrize("hypernet_layers", [1, 2])
@pytest.mark.parametrize("state_shape", [STATE_DIM, (1, STATE_DIM)])
def test_qmix_is_monotonic_in_every_agent_q(hypernet_layers, state_shape):
    torch.manual_seed(hypernet_layers)
    mixer = mixer_REGISTRY["qmix"](make_args(hypernet_layers=hypernet_layers,
                                             state_shape=state_shape))
    agent_qs = (10 * torch.randn(16, 9, N_AGENTS)).requires_grad_()
    states = 3 * torch.randn(16, 9, STATE_DIM)
    q_tot = mixer(agent_qs, states)
    assert q_tot.shape == (16, 9, 1)
    (grads,) = torch.autograd.grad(q_tot.sum(), agent_qs)
    assert (grads >= 0).all()
    assert (grads > 0).float().mean() > 0.5  # genuinely mixes, not a constant


def test_qmix_depends_on_the_state_and_rejects_deep_hypernets():
    mixer = mixer_REGISTRY["qmix"](make_args())
    agent_qs = torch.randn(2, 3, N_AGENTS)
    assert not torch.allclose(mixer(agent_qs, torch.randn(2, 3, STATE_DIM)),
                              mixer(agent_qs, torch.randn(2, 3, STATE_DIM)))
    with pytest.raises(ValueError, match="hypernet_layers"):
        mixer_REGISTRY["qmix"](make_args(hypernet_layers=3))


def test_mixer_parameter_names_match_epymarl():
    names = set(mixer_REGISTRY["qmix"](make_args()).state_dict())
    assert {"hyper_w_1.0.weight", "hyper_w_1.2.weight", "hyper_w_final.0.weight",
            "hyper_b_1.weight", "V.0.weight", "V.2.bias"} <= names


# --- agents --------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["rnn", "rnn_ns"])
@pytest.mark.parametrize("use_rnn", [True, False])
def test_agent_forward_sequence_equals_stepping(agent, use_rnn):
    torch.manual_seed(0)
    args = make_args(use_rnn=use_rnn)
    net = agent_REGISTRY[agent](6, args)
    batch_size, steps = 2, 7
    inputs = torch.randn(batch_size * N_AGENTS, steps, 6)
    hidden = torch.randn(batch_size * N_AGENTS, args.hidden_dim)
    q_seq, h_seq = net.forward_sequence(inputs, hidden)
    assert q_seq.shape == (batch_size * N_AGENTS, steps, N_ACTIONS)
    assert h_seq.shape == (batch_size * N_AGENTS, steps, args.hidden_dim)
    h = hidden
    for t in range(steps):
        q, h = net(inputs[:, t], h)
        torch.testing.assert_close(q_seq[:, t], q)
        torch.testing.assert_close(h_seq[:, t], h)


def test_agent_state_dict_keys_match_epymarl():
    gru = set(agent_REGISTRY["rnn"](6, make_args()).state_dict())
    assert gru == {"fc1.weight", "fc1.bias", "rnn.weight_ih", "rnn.weight_hh", "rnn.bias_ih",
                   "rnn.bias_hh", "fc2.weight", "fc2.bias"}
    feed_forward = set(agent_REGISTRY["rnn"](6, make_args(use_rnn=False)).state_dict())
    assert feed_forward == {"fc1.weight", "fc1.bias", "rnn.weight", "rnn.bias", "fc2.weight",
                            "fc2.bias"}
    non_shared = set(agent_REGISTRY["rnn_ns"](6, make_args()).state_dict())
    assert {f"agents.{i}.{key}" for i in range(N_AGENTS) for key in gru} == non_shared


def test_non_shared_agents_are_independent():
    torch.manual_seed(0)
    net = agent_REGISTRY["rnn_ns"](6, make_args())
    inputs, hidden = torch.randn(2 * N_AGENTS, 6), torch.zeros(2 * N_AGENTS, 16)
    before, _ = net(inputs, hidden)
    with torch.no_grad():
        net.agents[1].fc2.bias += 1.0
    after, _ = net(inputs, hidden)
    changed = (after - before).abs().sum(-1).view(2, N_AGENTS) > 0
    assert changed.tolist() == [[False, True, False]] * 2


# --- controllers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mac", sorted(mac_REGISTRY))
@pytest.mark.parametrize("use_rnn", [True, False])
@pytest.mark.parametrize("output_type", ["q", "pi_logits"])
def test_forward_all_equals_stepping_forward(mac, use_rnn, output_type):
    torch.manual_seed(1)
    controller = make_mac(mac, use_rnn=use_rnn, agent_output_type=output_type)
    batch = make_batch()
    outputs = controller.forward_all(batch)
    assert outputs.shape == (4, 6, N_AGENTS, N_ACTIONS)
    controller.init_hidden(batch.batch_size)
    for t in range(batch.max_seq_length):
        torch.testing.assert_close(outputs[:, t], controller.forward(batch, t))
    assert controller.hidden_states.shape == (4 * N_AGENTS, 16)


def test_policy_outputs_are_masked_probabilities():
    controller = make_mac(agent_output_type="pi_logits")
    batch = make_batch()
    probs = controller.forward_all(batch)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 6, N_AGENTS))
    assert (probs[batch["avail_actions"] == 0] < 1e-6).all()


class EchoAgent(nn.Module):
    """Returns its inputs as its outputs, to show what the controller feeds the agent."""

    def __init__(self, input_shape, args):
        super().__init__()
        self.input_shape = input_shape

    def init_hidden(self):
        return torch.zeros(1, 1)

    def forward(self, inputs, hidden_state):
        return inputs, torch.zeros(inputs.shape[0], 1)


@pytest.mark.parametrize("last_action, agent_id", [(True, True), (False, True), (False, False)])
def test_agent_inputs_are_obs_last_action_and_id(monkeypatch, last_action, agent_id):
    monkeypatch.setitem(agent_REGISTRY, "echo", EchoAgent)
    batch = make_batch()
    args = make_args(agent="echo", obs_last_action=last_action, obs_agent_id=agent_id)
    controller = mac_REGISTRY["basic_mac"](batch.scheme, {"agents": N_AGENTS}, args)
    width = OBS_DIM + N_ACTIONS * last_action + N_AGENTS * agent_id
    assert controller.agent.input_shape == width

    inputs = controller.forward_all(batch)  # the loop path (EchoAgent has no forward_sequence)
    assert inputs.shape == (4, 6, N_AGENTS, width)
    torch.testing.assert_close(inputs[..., :OBS_DIM], batch["obs"])
    if last_action:
        previous = inputs[..., OBS_DIM:OBS_DIM + N_ACTIONS]
        assert (previous[:, 0] == 0).all()
        torch.testing.assert_close(previous[:, 1:], batch["actions_onehot"][:, :-1])
    if agent_id:
        ids = inputs[..., -N_AGENTS:]
        torch.testing.assert_close(ids, torch.eye(N_AGENTS).expand(4, 6, -1, -1))
    controller.init_hidden(4)
    torch.testing.assert_close(controller.forward(batch, 3), inputs[:, 3])


@pytest.mark.parametrize("mac", sorted(mac_REGISTRY))
def test_select_actions_is_greedy_over_available_actions(mac):
    torch.manual_seed(2)
    controller = make_mac(mac)
    batch = make_batch()
    controller.init_hidden(batch.batch_size)
    for t in range(3):
        expected_q = controller.forward_all(batch)[:, t]
        chosen = controller.select_actions(batch, t, t_env=0, bs=[1, 3], test_mode=True)
        assert chosen.shape == (2, N_AGENTS) and chosen.dtype == torch.long
        masked = expected_q.masked_fill(batch["avail_actions"][:, t] == 0, -float("inf"))
        torch.testing.assert_close(chosen, masked.argmax(-1)[[1, 3]])
        assert not controller.hidden_states.requires_grad


@pytest.mark.parametrize("mac", sorted(mac_REGISTRY))
def test_mac_save_load_and_load_state(tmp_path, mac):
    torch.manual_seed(3)
    source, other, copy = make_mac(mac), make_mac(mac), make_mac(mac)
    batch = make_batch()
    assert not torch.allclose(source.forward_all(batch), other.forward_all(batch))
    source.save_models(str(tmp_path))
    assert (tmp_path / "agent.th").exists()
    other.load_models(str(tmp_path))
    torch.testing.assert_close(other.forward_all(batch), source.forward_all(batch))
    copy.load_state(source)
    torch.testing.assert_close(copy.forward_all(batch), source.forward_all(batch))
    copy.load_state_dict(make_mac(mac).state_dict())
    assert not torch.allclose(copy.forward_all(batch), source.forward_all(batch))


@pytest.mark.parametrize("mac", sorted(mac_REGISTRY))
def test_policies_never_sample_an_unavailable_action(mac):
    """Logits favour every unavailable action by far; masking before the softmax still gives
    them no probability, so thousands of draws never pick one."""
    torch.manual_seed(4)
    controller = make_mac(mac, agent_output_type="pi_logits", action_selector="soft_policies")
    with torch.no_grad():
        for agent in controller.agent.agents if mac == "non_shared_mac" else [controller.agent]:
            agent.fc2.bias.copy_(torch.tensor([50.0, -50.0, 50.0, -50.0, 50.0]))
    batch = make_batch(batch_size=200, steps=3)
    for t in range(3):
        controller.init_hidden(batch.batch_size)
        actions = controller.select_actions(batch, t, t_env=0)
        assert batch["avail_actions"][:, t].gather(-1, actions.unsqueeze(-1)).eq(1).all()


# --- critics -------------------------------------------------------------------------------------
def make_critic(name):
    args = make_args(obs_individual_obs=False)
    return critic_REGISTRY[name](make_batch().scheme, args)


# which inputs each critic must depend on: observation, state, other agents' actions
CRITIC_INPUTS = {"ac_critic": {"obs"}, "cv_critic": {"state"}, "coma_critic": {"obs", "state", "actions"}}


@pytest.mark.parametrize("name", sorted(critic_REGISTRY))
def test_critics_depend_on_their_inputs_only(name):
    torch.manual_seed(5)
    critic = make_critic(name)
    batch = make_batch()
    out = critic(batch)
    width = N_ACTIONS if name.startswith("coma") else 1
    assert out.shape == (4, 6, N_AGENTS, width)
    uses = CRITIC_INPUTS[name.removesuffix("_ns")]
    for field in ("obs", "state", "actions"):
        changed = make_batch()
        changed.update({field: make_batch(seed=9)[field]}, ts=slice(None))
        assert (not torch.allclose(critic(changed), out)) == (field in uses), field


def test_coma_critic_ignores_the_agents_own_action():
    critic = make_critic("coma_critic")
    batch = make_batch()
    out = critic(batch)
    changed = make_batch()
    actions = changed["actions"].clone()
    actions[:, :, 0] = (actions[:, :, 0] + 1) % N_ACTIONS   # only agent 0's action changes
    changed.update({"actions": actions}, ts=slice(None))
    moved = (critic(changed) - out).abs().sum(-1) > 0
    assert not moved[:, :, 0].any() and moved[:, :, 1:].all()


@pytest.mark.parametrize("name", ["ac_critic_ns", "cv_critic_ns", "coma_critic_ns"])
def test_non_shared_critics_keep_one_network_per_agent(name):
    critic = make_critic(name)
    batch = make_batch()
    before = critic(batch)
    with torch.no_grad():
        critic.nets[1][-1].bias += 1.0
    changed = (critic(batch) - before).abs().sum(-1) > 0
    assert not changed[:, :, 0].any() and changed[:, :, 1].all() and not changed[:, :, 2].any()


# --- policy distributions ------------------------------------------------------------------------
def test_categorical_log_prob_and_entropy_match_torch():
    probs = torch.softmax(torch.randn(4, 6, N_AGENTS, N_ACTIONS), -1)
    actions = torch.randint(N_ACTIONS, (4, 6, N_AGENTS, 1))
    reference = torch.distributions.Categorical(probs=probs)
    torch.testing.assert_close(CategoricalPolicy.log_prob(probs, actions, None),
                               reference.log_prob(actions.squeeze(-1)))
    torch.testing.assert_close(CategoricalPolicy.entropy(probs, None), reference.entropy())


def test_gaussian_log_prob_and_entropy_match_torch_over_the_agents_dimensions():
    """Raw (unclipped) actions are stored and the env clips them, so the log-probability is the
    Gaussian's; a dimension an agent lacks (avail 0) counts for nothing."""
    torch.manual_seed(6)
    mean, log_std = torch.randn(4, N_AGENTS, 3), torch.randn(4, N_AGENTS, 3).clamp(-2, 1)
    outputs = torch.cat([mean, log_std], -1)
    actions = mean + 3 * torch.randn(4, N_AGENTS, 3)   # many beyond the bounds [-1, 1]
    avail = torch.ones(4, N_AGENTS, 3)
    avail[:, 1, 2] = 0
    normal = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(GaussianPolicy.log_prob(outputs, actions, avail),
                               (normal.log_prob(actions) * avail).sum(-1))
    torch.testing.assert_close(GaussianPolicy.entropy(outputs, avail), (normal.entropy() * avail).sum(-1))


def test_continuous_mac_outputs_gaussian_parameters_and_samples_float_actions():
    torch.manual_seed(7)
    args = make_args(continuous_actions=True, n_actions=2, agent_output_type="pi_logits",
                     action_selector="soft_policies", log_std_init=-1.0, obs_last_action=True)
    scheme = {"state": {"vshape": STATE_DIM}, "obs": {"vshape": OBS_DIM, "group": "agents"},
              "actions": {"vshape": (2,), "group": "agents"},
              "avail_actions": {"vshape": (2,), "group": "agents", "dtype": torch.int}}
    batch = EpisodeBatch(scheme, {"agents": N_AGENTS}, 500, 2)
    batch.update({"obs": torch.randn(500, 2, N_AGENTS, OBS_DIM), "avail_actions": torch.ones(500, 2, N_AGENTS, 2),
                  "actions": torch.randn(500, 2, N_AGENTS, 2)}, ts=slice(None))
    controller = mac_REGISTRY["basic_mac"](batch.scheme, {"agents": N_AGENTS}, args)
    outputs = controller.forward_all(batch)
    assert outputs.shape == (500, 2, N_AGENTS, 4)
    mean = outputs[:, 0, :, :2]
    torch.testing.assert_close(outputs[..., 2:], torch.full_like(outputs[..., 2:], -1.0))
    controller.init_hidden(500)
    greedy = controller.select_actions(batch, 0, t_env=0, test_mode=True)
    torch.testing.assert_close(greedy, mean)
    controller.init_hidden(500)
    sampled = controller.select_actions(batch, 0, t_env=0)
    assert sampled.dtype == torch.float32 and sampled.shape == (500, N_AGENTS, 2)
    assert (sampled - mean).std().item() == pytest.approx(torch.exp(torch.tensor(-1.0)).item(), rel=0.05)


def test_categorical_entropy_and_log_prob_have_finite_gradients_with_masked_actions():
    """A masked action has probability exactly 0; its terms must not turn gradients into nan."""
    logits = torch.tensor([[1.0, 0.5, -2.0]], requires_grad=True)
    probs = torch.softmax(logits.masked_fill(torch.tensor([[False, True, False]]), -1e10), -1)
    assert probs[0, 1] == 0
    loss = CategoricalPolicy.entropy(probs, None).sum() + CategoricalPolicy.log_prob(
        probs, torch.tensor([[1]]), None).sum()
    loss.backward()
    assert torch.isfinite(logits.grad).all()
