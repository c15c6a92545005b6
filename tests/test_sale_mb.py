"""Property tests for SALE-MB (docs/method.md): AvgL1Norm, SALE and KL balancing maths, the
monotonic context mixer, imagination, the world model, the learner's update, gradient routes,
checkpoints, end-to-end runs of every ablation and start-up config checks.

Learners here are built from the real `sale_mb*.yaml` configs (shrunk widths) on small hand-made
EpisodeBatches."""
import copy
import math
import os
import subprocess
import sys
from functools import lru_cache
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from components.episode_buffer import EpisodeBatch
from components.transforms import OneHot
from controllers import REGISTRY as mac_REGISTRY
from helpers import MAIN, TINY, metric, read_json, run_main, sacred_runs
from learners import REGISTRY as learner_REGISTRY
from learners.sale_model_learner import live_agent_step_mask
from modules.agents.sale_agent import SALEAgent, StateActionEncoder
from modules.mixers.qmix_sale import QMixSALE
from modules.world_models import REGISTRY as world_model_REGISTRY
from modules.world_models.rollout_encoder import RolloutEncoder
from modules.world_models.vae_world_model import usable_actions
from run_config import build_config, parse_overrides
from utils.latent_utils import avg_l1_norm, balanced_kl, gaussian_kl, standard_normal_kl
from utils.td_utils import valid_step_mask



@lru_cache(maxsize=None)
def _config(alg):
    return build_config(alg, "matrix_game", [])


RING = 3                                   # cells of the toy ring world (observation = one-hot cell)
N_AGENTS, N_ACTIONS, OBS_DIM, STATE_DIM = 2, 4, RING, 2 * RING
HORIZON = 3  # H: the unit tests run every part on every update (sale_args), whatever the defaults
SMALL = dict(hidden_dim=16, sale_dim=8, sale_hidden_dim=16, q_head_dim=16, mixing_embed_dim=8,
             hypernet_embed=16, agent_latent_dim=4, world_model_dim=32, action_embed_dim=4,
             imagination_dim=8)


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats.setdefault(key, []).append((t, value))


def sale_args(alg="sale_mb", **overrides):
    """The alg's real config (defaults + yaml) with small widths, the toy sizes, no warm-up, a
    log line every update, TD/imagination on every slot (imagination_starts=null) and every part
    the method has on every update: the model step (model_update_interval=1), H = 3 and, with a
    world model, foresight in the mixer's context (the defaults leave it out)."""
    config = copy.deepcopy(_config(alg))
    config.update(SMALL, n_agents=N_AGENTS, n_actions=N_ACTIONS, state_shape=STATE_DIM,
                  obs_shape=OBS_DIM, device="cpu", learner_log_interval=0, wm_warmup=0,
                  batch_size=4, imagination_starts=None, model_update_interval=1, rollout_depth=HORIZON)
    if config["world_model"] is not None and "foresight" not in config["mixer_inputs"]:
        config["mixer_inputs"] = [*config["mixer_inputs"], "foresight"]
    config.update(overrides)
    return SimpleNamespace(**config)


def make_batch(seed=0, lengths=(6, 3, 6, 4), terminal=(False, True, False, True), slots=8):
    """Random episodes: episode b has lengths[b] transitions (slots 0..lengths[b] filled) and ends
    in a real terminal where terminal[b]. Actions 0 and 1 are always available, 2 and 3 at random."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(lengths)
    scheme = {"state": {"vshape": STATE_DIM}, "obs": {"vshape": OBS_DIM, "group": "agents"},
              "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
              "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
              "reward": {"vshape": (1,)}, "terminated": {"vshape": (1,), "dtype": torch.uint8}}
    batch = EpisodeBatch(scheme, {"agents": N_AGENTS}, batch_size, slots,
                         preprocess={"actions": ("actions_onehot", [OneHot(N_ACTIONS)])})
    filled = torch.zeros(batch_size, slots, 1, dtype=torch.long)
    terminated = torch.zeros(batch_size, slots, 1, dtype=torch.uint8)
    for b, (length, ends) in enumerate(zip(lengths, terminal)):
        filled[b, :length + 1] = 1
        terminated[b, length - 1] = int(ends)
    avail = torch.rand(batch_size, slots, N_AGENTS, N_ACTIONS, generator=generator) < 0.5
    avail[..., :2] = True
    scores = torch.rand(batch_size, slots, N_AGENTS, N_ACTIONS, generator=generator)
    actions = scores.masked_fill(~avail, -1).argmax(-1, keepdim=True)
    avail = avail.int() * filled.unsqueeze(-1)
    rewards = (actions.squeeze(-1) == 1).float().sum(-1, keepdim=True) - 0.5
    batch.update({"obs": torch.randn(batch_size, slots, N_AGENTS, OBS_DIM, generator=generator),
                  "state": torch.randn(batch_size, slots, STATE_DIM, generator=generator),
                  "avail_actions": avail, "actions": actions * filled.unsqueeze(-1),
                  "reward": rewards * filled, "terminated": terminated, "filled": filled},
                 ts=slice(None))
    return batch


def full_batch(seed=0):
    """Four episodes of 6 transitions that all time out: no padding, no terminal."""
    return make_batch(seed, lengths=(6, 6, 6, 6), terminal=(False,) * 4, slots=7)


def make_learner(seed=0, alg="sale_mb", scheme=None, **overrides):
    torch.manual_seed(seed)
    scheme = make_batch().scheme if scheme is None else scheme
    args = sale_args(alg, **overrides)
    mac = mac_REGISTRY[args.mac](scheme, {"agents": N_AGENTS}, args)
    return learner_REGISTRY[args.learner](mac, scheme, RecordingLogger(), args)


def logged(learner, key):
    return [value for _, value in learner.logger.stats[key]]


def real_rollout(learner, batch):
    """What train() feeds imagination: the agents over the batch (Qs, recurrent states), the
    target agents' states, the posterior means; returns (rollout, its inputs)."""
    agent_qs, hidden = learner.mac.forward_all(batch, return_hidden=True)
    with torch.no_grad():
        _, target_hidden = learner.target_mac.forward_all(batch, return_hidden=True)
    prev_hidden = torch.cat([torch.zeros_like(target_hidden[:, :1]), target_hidden[:, :-1]], 1)
    joint_mean = learner.model.world_model.observe(batch["obs"], prev_hidden)[0].flatten(-2).detach()
    _, rollout = learner.model.imagine(learner.mac, joint_mean, agent_qs, hidden,
                                       batch["avail_actions"].float(), learner.training_steps)
    return rollout, dict(agent_qs=agent_qs, hidden=hidden, target_hidden=target_hidden,
                         joint_mean=joint_mean)


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# =================================================================================================
# 1. AvgL1Norm
@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 1e2, 1e4])
def test_avg_l1_norm_gives_unit_mean_absolute_value(scale):
    """Every vector (last dim) comes out with mean |x| = 1, same signs, same direction."""
    generator = torch.Generator().manual_seed(int(math.log10(scale)) + 10)
    x = (torch.randn(6, 5, 17, generator=generator) + 0.3) * scale
    y = avg_l1_norm(x)
    torch.testing.assert_close(y.abs().mean(-1), torch.ones(6, 5))
    assert torch.equal(y.sign(), x.sign())
    torch.testing.assert_close(avg_l1_norm(7.0 * x), y)  # only the direction matters
    assert torch.isfinite(avg_l1_norm(torch.zeros(3, 4))).all()


# =================================================================================================
# 2. SALE losses on a deterministic transition table
TABLE_DIM = 5


def transition_table(n_states=6, dim=TABLE_DIM, seed=0):
    """Inputs x_s, one-hot actions a and x_{next(s, a)} for every (s, a) of a fixed table."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(n_states, dim, generator=generator)
    next_state = torch.randint(n_states, (n_states, N_ACTIONS), generator=generator)
    x = states.repeat_interleave(N_ACTIONS, dim=0)
    actions = torch.eye(N_ACTIONS).repeat(n_states, 1)
    return x, actions, states[next_state.flatten()]


def train_sale(embed, embed_action, params, table, updates=1000):
    """Adam on ||g(f(x_t), a_t) - sg f(x_{t+1})||^2; returns the losses."""
    x, actions, x_next = table
    optimiser = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(updates):
        loss = (embed_action(embed(x), actions) - embed(x_next).detach()).pow(2).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def test_state_action_encoder_learns_a_deterministic_transition_table():
    """The SALE loss of TD7's encoder pair falls below 10% of its start on a fixed table."""
    torch.manual_seed(0)
    encoder = StateActionEncoder(TABLE_DIM, N_ACTIONS, embed_dim=8, hidden_dim=32)
    losses = train_sale(encoder.embed, encoder.embed_action, encoder.parameters(),
                        transition_table())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_sale_agent_live_encoder_learns_while_q_reads_the_fixed_copy():
    """Through SALEAgent.embed/embed_action the SALE loss falls below 10%; the Q-values do not
    move (they read the fixed copy) until refresh_fixed_encoders, and then they do."""
    torch.manual_seed(0)
    input_shape = TABLE_DIM + N_ACTIONS + N_AGENTS  # observation, last action, agent id
    agent = SALEAgent(input_shape, sale_args())
    inputs = torch.randn(10, input_shape)
    hidden = agent.init_hidden().expand(10, -1)
    q_before = agent(inputs, hidden)[0].detach()
    losses = train_sale(agent.embed, agent.embed_action, list(agent.encoder_parameters()),
                        transition_table())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    assert torch.equal(agent(inputs, hidden)[0], q_before)
    agent.refresh_fixed_encoders()
    assert not torch.allclose(agent(inputs, hidden)[0], q_before)


@pytest.mark.parametrize("q_linear_head", [True, False])
@pytest.mark.parametrize("read_target_encoder", [False, True])
def test_q_values_of_given_actions_are_those_of_the_full_head(q_linear_head, read_target_encoder):
    """q_values(h, obs, actions): for indices [..., k] the full head's values at them, with and
    without the linear read-out, for either encoder the head reads. Every layer but the last gives
    the same bits; the last (one output) is a product whose BLAS summation order may depend on the
    number of rows, so this checks to float32 rounding (on the learner's fixed batches the
    parameters after three updates are bitwise the full head's: test_sale_mb_previous_path.py)."""
    torch.manual_seed(0)
    input_shape = OBS_DIM + N_ACTIONS + N_AGENTS
    agent = SALEAgent(input_shape, sale_args(q_linear_head=q_linear_head))
    agent.read_target_encoder = read_target_encoder
    h, obs = torch.randn(5, 7, agent.hidden_dim), torch.randn(5, 7, OBS_DIM)
    actions = torch.randint(0, N_ACTIONS, (5, 7, 2))
    full = agent.q_values(h, obs)
    given = agent.q_values(h, obs, actions)
    assert given.shape == (5, 7, 2)
    torch.testing.assert_close(given, torch.gather(full, -1, actions), rtol=0, atol=1e-6)


def test_q_head_reads_fixed_copy_and_target_reads_fixed_target_copy():
    """Perturbing the live encoder moves no Q; the fixed copy moves the live Q only; the fixed
    target copy moves only what read_target_encoder=True returns."""
    torch.manual_seed(0)
    input_shape = OBS_DIM + N_ACTIONS + N_AGENTS
    agent = SALEAgent(input_shape, sale_args())
    inputs, hidden = torch.randn(6, input_shape), agent.init_hidden().expand(6, -1)

    def both_qs():
        agent.read_target_encoder = False
        live = agent(inputs, hidden)[0].detach()
        agent.read_target_encoder = True
        target = agent(inputs, hidden)[0].detach()
        return live, target

    live, target = both_qs()
    for name, live_moves, target_moves in [("encoder", False, False),
                                           ("fixed_encoder", True, False),
                                           ("fixed_target_encoder", False, True)]:
        with torch.no_grad():
            for param in getattr(agent, name).parameters():
                param.add_(0.3)
        new_live, new_target = both_qs()
        assert (not torch.equal(new_live, live)) == live_moves, name
        assert (not torch.equal(new_target, target)) == target_moves, name
        live, target = new_live, new_target


# =================================================================================================
# 3. KL balancing
def gaussians(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=generator).requires_grad_() for _ in range(4)]


def kl_grads(kl_fn):
    q_mean, q_log_std, p_mean, p_log_std = params = gaussians()
    value = kl_fn((q_mean, q_log_std), (p_mean, p_log_std))
    return value.detach(), torch.autograd.grad(value.sum(), params)


def test_gaussian_kls_match_torch_distributions():
    q_mean, q_log_std, p_mean, p_log_std = (t.detach() for t in gaussians())
    q, p = (torch.distributions.Normal(m, s.exp()) for m, s in ((q_mean, q_log_std), (p_mean, p_log_std)))
    torch.testing.assert_close(gaussian_kl(q_mean, q_log_std, p_mean, p_log_std),
                               torch.distributions.kl_divergence(q, p))
    torch.testing.assert_close(standard_normal_kl(q_mean, q_log_std),
                               gaussian_kl(q_mean, q_log_std, torch.zeros(3, 4), torch.zeros(3, 4)))


@pytest.mark.parametrize("alpha", [0.8, 0.7, 0.3])
def test_balanced_kl_splits_the_gradient_alpha_to_prior(alpha):
    """Value = KL(q || p); the prior gets alpha and the posterior 1 - alpha of KL's gradient."""
    plain_value, plain = kl_grads(lambda q, p: gaussian_kl(*q, *p))
    value, balanced = kl_grads(lambda q, p: balanced_kl(q, p, alpha))
    torch.testing.assert_close(value, plain_value)
    for posterior_grad, plain_grad in zip(balanced[:2], plain[:2]):
        torch.testing.assert_close(posterior_grad, (1 - alpha) * plain_grad)
    for prior_grad, plain_grad in zip(balanced[2:], plain[2:]):
        torch.testing.assert_close(prior_grad, alpha * plain_grad)


def test_plain_kl_equals_alpha_half_up_to_scale():
    """alpha=None (no balancing) has the value of alpha=0.5 and exactly twice its gradient."""
    half_value, half = kl_grads(lambda q, p: balanced_kl(q, p, 0.5))
    plain_value, plain = kl_grads(lambda q, p: balanced_kl(q, p, None))
    torch.testing.assert_close(plain_value, half_value)
    for plain_grad, half_grad in zip(plain, half):
        torch.testing.assert_close(plain_grad, 2 * half_grad)


# =================================================================================================
# 4. The qmix_sale mixer and its context
@pytest.mark.parametrize("hypernet_layers", [1, 2])
def test_qmix_sale_is_monotonic_in_every_agent_q(hypernet_layers):
    """dQ_tot/dQ_i >= 0 for random Qs and contexts, several inits (weights scaled up too)."""
    args = sale_args(hypernet_layers=hypernet_layers)
    for seed in range(4):
        torch.manual_seed(seed)
        mixer = QMixSALE(args)
        if seed % 2:
            with torch.no_grad():
                for param in mixer.parameters():
                    param.mul_(5.0)
        agent_qs = (10 * torch.randn(8, 5, N_AGENTS)).requires_grad_()
        context = mixer.context(state=torch.randn(8, 5, STATE_DIM), sale=torch.randn(8, 5, args.sale_dim),
                                foresight=torch.randn(8, 5, args.imagination_dim))
        q_tot = mixer(agent_qs, context)
        assert q_tot.shape == (8, 5, 1)
        (grad,) = torch.autograd.grad(q_tot.sum(), agent_qs)
        assert (grad >= 0).all() and (grad > 0).any()


def test_qmix_sale_context_follows_mixer_inputs():
    """c is the configured parts in the configured order; a missing part is an error."""
    args = sale_args(mixer_inputs=["foresight", "state"])
    mixer = QMixSALE(args)
    state, foresight = torch.randn(2, STATE_DIM), torch.randn(2, args.imagination_dim)
    torch.testing.assert_close(mixer.context(state=state, foresight=foresight, sale=None),
                               torch.cat([foresight, state], -1))
    with pytest.raises(ValueError, match="foresight"):
        mixer.context(state=state)


def mixer_contexts(learner, batch):
    """Train once and return the contexts the live mixer (real TD, slots 0..T-1) and the target
    mixer (slots 1..T) read."""
    captured = {}
    for name in ("mixer", "target_mixer"):
        module = getattr(learner, name)

        def spy(agent_qs, states, _forward=module.forward, _name=name):
            captured.setdefault(_name, states.detach().clone())  # the first call: real TD
            return _forward(agent_qs, states)

        module.forward = spy
    torch.manual_seed(123)
    learner.train(batch, t_env=0, episode_num=0)
    return captured["mixer"], captured["target_mixer"]


@pytest.mark.parametrize("changed_slot", [2, 5])
def test_mixer_context_does_not_depend_on_the_taken_action(changed_slot):
    """c^t = [s^t, F(Z^t), m^t] is identical at every slot <= t when only the taken actions at t
    change (IGM): Z^t reads the target agents' h^{t-1} (actions up to t-2) and m^t imagines
    from the greedy action, not the taken one. The change must show up where it may: at slot
    t + 2 the posterior reads h^{t+1}, which saw a^t as its last action (a check that the
    comparison can see a dependence at all). The target mixer reads c^{t+1}."""
    batch = full_batch()
    changed = full_batch()
    actions = changed["actions"].clone()
    actions[:, changed_slot] = (actions[:, changed_slot] == 0).long()  # 0 <-> not 0, both available
    changed.update({"actions": actions}, ts=slice(None), mark_filled=False)
    assert not torch.equal(actions, batch["actions"])

    live, target = mixer_contexts(make_learner(0), batch)
    live_changed, target_changed = mixer_contexts(make_learner(0), changed)
    assert torch.equal(target[:, :-1], live[:, 1:])  # the target side reads c^{t+1}
    full = torch.cat([live, target[:, -1:]], 1)  # c at every slot 0..T
    full_changed = torch.cat([live_changed, target_changed[:, -1:]], 1)
    assert torch.equal(full[:, :changed_slot + 1], full_changed[:, :changed_slot + 1])
    if changed_slot + 2 < full.shape[1]:
        assert not torch.allclose(full[:, changed_slot + 2], full_changed[:, changed_slot + 2])


# =================================================================================================
# 5. Imagination
def test_world_model_imagine_step_returns_its_documented_outputs_without_gradient():
    """Shapes as documented, a never-empty predicted mask, probabilities in [0, 1]; nothing
    returned carries gradient even when the start latent does; the next step reads the latent."""
    torch.manual_seed(0)
    args = sale_args()
    model = world_model_REGISTRY["vae_world_model"](make_batch().scheme, args)
    joint_sale = StateActionEncoder(model.joint_latent_dim, N_AGENTS * N_ACTIONS, args.sale_dim, 16)
    rows = 12
    latent = torch.randn(rows, model.joint_latent_dim, requires_grad=True)
    for _ in range(HORIZON):
        actions = F.one_hot(torch.randint(N_ACTIONS, (rows, N_AGENTS)), N_ACTIONS).float()
        out = model.imagine_step(latent, actions, joint_sale)
        assert out["latent"].shape == (rows, model.joint_latent_dim)
        assert out["reward"].shape == out["continuation"].shape == (rows, 1)
        assert out["obs"].shape == (rows, N_AGENTS, OBS_DIM)
        assert out["avail"].shape == (rows, N_AGENTS, N_ACTIONS)
        assert model.decode_state(out["latent"]).shape == (rows, STATE_DIM)
        assert ((out["continuation"] >= 0) & (out["continuation"] <= 1)).all()
        assert (out["avail"].sum(-1) >= 1).all()  # never an empty mask
        assert not any(value.requires_grad for value in out.values())
        assert not torch.equal(out["latent"], latent)
        latent = out["latent"]


def test_usable_actions_falls_back_to_the_most_likely_action():
    logits = torch.tensor([[-3.0, -0.5, -1.0, -2.0],   # none predicted: the most likely, 1
                           [2.0, -1.0, 0.5, -4.0]])   # 0 and 2
    expected = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    assert torch.equal(usable_actions(logits), expected)


@pytest.mark.parametrize("img_epsilon", [0.0, 1.0])
def test_learner_imagination_picks_only_predicted_available_actions(monkeypatch, img_epsilon):
    """learner.model.imagine: the first action is allowed by the real mask, every imagined action by
    the predicted one. Agent 0's predicted mask is empty (fallback: its most likely action, 2);
    agent 1 may take 1 or 3. The agents' unmasked greedy choice would break the mask."""
    learner = make_learner(0, img_epsilon=img_epsilon)
    logits = torch.tensor([[-3.0, -2.0, -0.5, -1.0], [-1.0, 2.0, -2.0, 1.0]])
    monkeypatch.setattr(learner.model.world_model, "avail_logits",
                        lambda z: logits.expand(*z.shape[:-1], N_ACTIONS))
    batch = full_batch()
    rollout, _ = real_rollout(learner, batch)
    actions, avail = rollout["actions"], rollout["avail"]
    real_avail = batch["avail_actions"]
    assert (real_avail.gather(-1, actions[:, :, 0].unsqueeze(-1)) == 1).all()
    expected = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    assert torch.equal(avail, expected.expand_as(avail))
    assert (actions[:, :, 1:, 0] == 2).all()
    assert set(actions[:, :, 1:, 1].unique().tolist()) <= {1, 3}
    # what the MAC read at imagined step k: that step's predicted mask, the actions of step k-1
    assert torch.equal(rollout["avail_actions"][:, :, 1:], avail)
    assert torch.equal(rollout["actions_onehot"][:, :, :HORIZON], F.one_hot(actions, N_ACTIONS).float())
    if img_epsilon == 0:
        unmasked = rollout["greedy_qs"].argmax(-1)
        assert (unmasked != actions[:, :, 1:]).any(), "the mask never mattered: a weak test"


def test_imagination_with_exploration_trains_on_batches_with_padding():
    """img_epsilon > 0 must work on batches where episodes end early: padded slots have an
    all-zero real availability, and imagination starts from them too (masked out later)."""
    learner = make_learner(0, img_epsilon=0.5)
    try:
        learner.train(make_batch(), t_env=0, episode_num=0)
    except RuntimeError as err:
        pytest.fail("BUG (SALEModelLearner.imagine -> policy_actions): with img_epsilon > 0 "
                    "the first imagined action of every slot is drawn by torch.multinomial over "
                    "the slot's REAL avail_actions; padded slots (all-zero availability) make it "
                    f"raise instead of being masked out: {err}")
    assert "imagined_td_loss" in learner.logger.stats


def test_learner_imagination_shapes_and_detached_outputs():
    """learner.model.imagine from every slot: shapes over [B, T+1, H(+1), ...]; everything but the
    foresight (which trains the rollout encoder) is free of gradient."""
    learner = make_learner(0)
    batch = full_batch()
    rollout, _ = real_rollout(learner, batch)
    B, S = batch.batch_size, batch.max_seq_length
    L, D = N_AGENTS * SMALL["agent_latent_dim"], SMALL["imagination_dim"]
    assert rollout["latents"].shape == (B, S, HORIZON, L)
    assert rollout["actions"].shape == (B, S, HORIZON, N_AGENTS)  # steps 0..H-1
    assert rollout["greedy_qs"].shape == (B, S, HORIZON - 1, N_AGENTS, N_ACTIONS)  # steps 1..H-1
    assert rollout["foresight"].shape == (B, S, HORIZON + 1, D)
    assert rollout["rewards"].shape == rollout["continuations"].shape == (B, S, HORIZON, 1)
    assert rollout["states"].shape == (B, S, HORIZON - 1, STATE_DIM)
    assert rollout["avail"].shape == (B, S, HORIZON, N_AGENTS, N_ACTIONS)
    assert rollout["obs"].shape == (B, S, HORIZON + 1, N_AGENTS, OBS_DIM)
    assert rollout["actions_onehot"].shape == rollout["avail_actions"].shape == (
        B, S, HORIZON + 1, N_AGENTS, N_ACTIONS)
    for key, value in rollout.items():
        assert value.requires_grad == (key == "foresight"), key


def gradient_reach(output, params):
    """Which of params a backward from output.sum() reaches (non-zero gradient)."""
    params = [p for p in params if p.requires_grad]
    grads = torch.autograd.grad(output.sum(), params, allow_unused=True, retain_graph=True)
    return [g is not None and bool(g.abs().sum() > 0) for g in grads]


def learner_parameters(learner):
    agent = learner.mac.agent
    return {"agent_td": list(agent.q_parameters()), "agent_encoder": list(agent.encoder_parameters()),
            "world_model": list(learner.model.world_model.parameters()),
            "joint_sale": list(learner.model.joint_sale.parameters()),
            "rollout_encoder": list(learner.model.rollout_encoder.parameters()),
            "mixer": list(learner.mixer.parameters())}


def test_imagined_steps_train_the_agents_but_not_the_world_model():
    """Imagined TD with the real slot's Q detached (so only imagined steps k >= 1 can carry an
    agent gradient): the agents' GRU/Q head get a gradient, the world model, joint SALE and
    live encoders none (decoded inputs are detached)."""
    learner = make_learner(0)
    batch = full_batch()
    rollout, real = real_rollout(learner, batch)
    sale = learner.model.joint_sale.embed(real["joint_mean"]).detach()
    context = learner.mixer.context(state=batch["state"], sale=sale,
                                    foresight=rollout["foresight"][:, :, 0])
    loss = learner._imagined_td_loss(rollout, real["agent_qs"].detach(), real["hidden"],
                                     real["target_hidden"], context, batch["filled"].float())
    groups = learner_parameters(learner)
    for name in ("agent_encoder", "world_model", "joint_sale"):
        assert not any(gradient_reach(loss, groups[name])), name
    for name in ("agent_td", "mixer", "rollout_encoder"):
        assert any(gradient_reach(loss, groups[name])), name


def test_foresight_trains_the_rollout_encoder_only():
    """Foresight m (read by the mixer) is trained through the rollout encoder alone: the start
    latents and imagined latents it reads are detached."""
    learner = make_learner(0)
    rollout, _ = real_rollout(learner, full_batch())
    for name, params in learner_parameters(learner).items():
        assert any(gradient_reach(rollout["foresight"], params)) == (name == "rollout_encoder"), name


def test_rollout_encoder_reads_from_far_to_near():
    """Foresight of imagined step k reads only steps >= k: m^{t+H} ignores Z^t, m^t does not."""
    torch.manual_seed(0)
    encoder = RolloutEncoder(6, 5)
    start, imagined = torch.randn(3, 6), torch.randn(3, HORIZON, 6)
    foresight = encoder(start, imagined)
    moved = encoder(start + 1.0, imagined)
    assert foresight.shape == (3, HORIZON + 1, 5)
    assert torch.equal(foresight[:, 1:], moved[:, 1:])
    assert not torch.allclose(foresight[:, 0], moved[:, 0])


# =================================================================================================
# 6. The world model learns a deterministic world
def ring_world(n_episodes=8, steps=6, seed=0):
    """Each agent walks a ring of RING cells (action 0/3 stay, 1 right, 2 left), observes its
    one-hot cell; the state is both one-hots; reward 1 when the agents meet after the move;
    action 3 is available only in cell 0. No terminals."""
    generator = torch.Generator().manual_seed(seed)
    moves = torch.tensor([0, 1, -1, 0])
    cells = torch.zeros(n_episodes, steps + 1, N_AGENTS, dtype=torch.long)
    cells[:, 0] = torch.randint(RING, (n_episodes, N_AGENTS), generator=generator)
    actions = torch.randint(3, (n_episodes, steps + 1, N_AGENTS), generator=generator)
    for t in range(steps):
        cells[:, t + 1] = (cells[:, t] + moves[actions[:, t]]) % RING
    obs = F.one_hot(cells, RING).float()
    avail = torch.ones(n_episodes, steps + 1, N_AGENTS, N_ACTIONS)
    avail[..., 3] = (cells == 0).float()
    rewards = (cells[:, 1:, 0] == cells[:, 1:, 1]).float().unsqueeze(-1)
    return dict(obs=obs, state=obs.flatten(-2), actions_onehot=F.one_hot(actions, N_ACTIONS).float(),
                avail_actions=avail, rewards=rewards, terminated=torch.zeros(n_episodes, steps, 1),
                slot_mask=torch.ones(n_episodes, steps + 1, 1), step_mask=torch.ones(n_episodes, steps, 1))


def ring_batch(n_episodes=8, steps=6, seed=0):
    """The ring world as an EpisodeBatch (what a runner would write)."""
    data = ring_world(n_episodes, steps, seed)
    batch = make_batch(seed, lengths=(steps,) * n_episodes, terminal=(False,) * n_episodes,
                       slots=steps + 1)
    batch.update({"obs": data["obs"], "state": data["state"],
                  "avail_actions": data["avail_actions"].int(),
                  "actions": data["actions_onehot"].argmax(-1, keepdim=True),
                  "reward": torch.cat([data["rewards"], torch.zeros(n_episodes, 1, 1)], 1)},
                 ts=slice(None), mark_filled=False)
    return batch


@pytest.mark.parametrize("use_sale", [False, True])
def test_world_model_learns_a_deterministic_world(use_sale):
    """600 Adam updates of the world-model loss (plus the joint SALE loss, as the learner does)
    on the ring world, at the yaml's world_model_dim.

    Bounds, each well past what a model that ignores the dynamics can reach:
    - 1-step reward error (mean |r_hat - r|) < 0.15: the agents meet on ~42% of the steps, so
      the best constant guess errs by ~0.42;
    - 1-step state error (||s_hat - s||, state = both one-hots) < 0.8: the best constant state
      (the mean) errs by ~1.15, and it starts at ~1.3;
    - 1-step latent error < 0.8 x the spread (mean squared deviation) of the posterior means it
      predicts: the prior beats guessing their mean, so a shrinking latent cannot pass alone;
    - observation reconstruction < 10% of its start.
    (The VAE learns slowly here: the posterior codes keep spreading and the KL-trained prior
    chases them; at 300 updates the latent error is still 60-80% of the spread.)"""
    torch.manual_seed(0)
    args = sale_args(use_sale=use_sale, standardise_rewards=False, world_model_dim=128)
    data = ring_world()
    model = world_model_REGISTRY["vae_world_model"](make_batch().scheme, args)
    joint_sale = (StateActionEncoder(model.joint_latent_dim, N_AGENTS * N_ACTIONS, args.sale_dim,
                                     args.sale_hidden_dim) if use_sale else None)
    params = list(model.parameters()) + (list(joint_sale.parameters()) if use_sale else [])
    optimiser = torch.optim.Adam(params, lr=3e-3)
    no_history = torch.zeros(*data["obs"].shape[:3], args.hidden_dim)

    def update():
        posterior = model.observe(data["obs"], no_history)
        joint_mean = posterior[0].flatten(-2).detach()
        loss, sale_action = 0.0, None
        if use_sale:
            z_s = joint_sale.embed(joint_mean)
            sale_action = joint_sale.embed_action(z_s[:, :-1], data["actions_onehot"][:, :-1].flatten(-2))
            loss = (sale_action - z_s[:, 1:].detach()).pow(2).sum(-1).mean()
        wm_loss, terms = model.loss(posterior, data["actions_onehot"], data["avail_actions"],
                                    data["obs"], data["state"], data["rewards"], data["terminated"],
                                    data["slot_mask"], data["step_mask"], sale_action)
        optimiser.zero_grad()
        (loss + wm_loss).backward()
        optimiser.step()
        return joint_mean, terms

    first_terms = update()[1]
    for _ in range(600):
        joint_mean, terms = update()
    errors = model.prediction_errors(joint_mean, data["actions_onehot"], data["state"],
                                     data["rewards"], data["step_mask"], HORIZON, joint_sale)
    targets = joint_mean[:, 1:]
    spread = (targets - targets.mean((0, 1))).pow(2).sum(-1).mean().item()
    assert errors["wm_reward_error_1step"] < 0.15, errors
    assert errors["wm_state_error_1step"] < 0.8, errors
    assert errors["wm_latent_error_1step"] < 0.8 * spread, (errors, spread)
    assert terms["wm_recon_loss"] < 0.1 * first_terms["wm_recon_loss"]


# =================================================================================================
# 7. Learner updates, checkpoints, fixed encoders
def test_repeated_updates_on_one_batch_lower_td_and_model_losses():
    """Overfitting one ring-world batch: TD, world-model and SALE losses all fall (mean of the
    last 5 of 50 updates below half of the first update's; seeds 0-2 give at most 0.41)."""
    learner = make_learner(0, target_update_interval_or_tau=1000, lr=3e-3, wm_lr=3e-3)
    batch = ring_batch()
    for update in range(50):
        learner.train(batch, t_env=update, episode_num=update)
    for key in ("td_loss", "wm_loss", "joint_sale_loss", "agent_sale_loss", "loss"):
        values = logged(learner, key)
        assert sum(values[-5:]) / 5 < 0.5 * values[0], (key, values[0], values[-5:])
    assert "imagined_td_loss" in learner.logger.stats


def test_warm_up_trains_the_world_model_without_imagination():
    """For wm_warmup updates the mixer reads m = 0 and imagined TD is off; then both start."""
    learner = make_learner(0, wm_warmup=2)
    batch = full_batch()
    foresight_dim = SMALL["imagination_dim"]  # the last part of c = [s, z_s, m]
    for update in range(3):
        live, _ = mixer_contexts(learner, batch)
        warming_up = update < 2
        assert (live[..., -foresight_dim:] == 0).all() == warming_up, update
        assert ("imagined_td_loss" in learner.logger.stats) == (not warming_up), update


@pytest.mark.parametrize("value_clip", [True, False])
def test_bootstrapped_values_are_clipped_to_the_targets_seen(value_clip):
    """TD7's value clip: with the range of targets seen so far set to [0, 0], the bootstrapped
    Q_tot is clipped to 0 and the targets are the rewards."""
    learner = make_learner(0, value_clip=value_clip, standardise_rewards=False)
    learner.target_range = [0.0, 0.0]
    batch = full_batch()
    learner.train(batch, t_env=0, episode_num=0)
    reward_mean = batch["reward"][:, :-1].mean().item() / N_AGENTS
    clipped = logged(learner, "target_mean")[0] == pytest.approx(reward_mean, abs=1e-6)
    assert clipped == value_clip


def test_agent_sale_loss_skips_dead_agents_and_invalid_steps():
    """The per-agent SALE loss reads no dead agent (only the no-op available) and no step after
    an episode's end."""
    learner = make_learner(0)
    batch = make_batch()
    obs, onehot = batch["obs"].clone(), batch["actions_onehot"]
    avail = batch["avail_actions"].float().clone()
    avail[:, :, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # agent 1 is dead throughout
    step_mask = valid_step_mask(batch["filled"], batch["terminated"][:, :-1].float())

    def loss(observations):
        return learner.mac.agent.sale_loss(observations, onehot,
                                           live_agent_step_mask(avail, step_mask)).item()

    base = loss(obs)
    dead_agent, padding, live_agent = obs.clone(), obs.clone(), obs.clone()
    dead_agent[:, :, 1] += 5.0
    padding[1, 4:] += 5.0  # episode 1 ends in a terminal after 3 steps: slot 3 is its last
    live_agent[:, :, 0] += 5.0
    assert loss(dead_agent) == base and loss(padding) == base
    assert loss(live_agent) != base


def test_one_optimiser_when_not_separate(tmp_path):
    """separate_wm_optimiser=False: one Adam over the TD and model parameters, no wm_opt.th."""
    learner = make_learner(0, separate_wm_optimiser=False)
    learner.train(make_batch(), t_env=0, episode_num=0)
    assert len(learner.optimisers) == 1
    optimised = {id(p) for group in learner.optimisers[0].adam.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in learner.td_params + learner.model_params}
    learner.save_models(str(tmp_path))
    assert "wm_opt.th" not in os.listdir(tmp_path)


def test_q_taken_mean_is_the_team_value_per_agent_like_target_mean():
    """q_taken_mean follows EPyMARL's (and q_learner's) definition, like target_mean: the mixed
    Q_tot of the taken actions averaged over valid steps, divided by n_agents."""
    learner = make_learner(0)
    q_tots = []
    forward = learner.mixer.forward
    learner.mixer.forward = lambda agent_qs, states: q_tots.append(forward(agent_qs, states)) or q_tots[-1]
    learner.train(full_batch(), t_env=0, episode_num=0)  # full batch: every step valid
    expected = q_tots[0].mean().item() / N_AGENTS  # the first mixer call is the real TD
    assert logged(learner, "q_taken_mean")[0] == pytest.approx(expected, rel=1e-5, abs=1e-6), (
        "sale_mb_learner logs q_taken_mean = masked_mean(chosen per-agent Q_i) / n_agents (the "
        "per-agent mean divided by n_agents once more), not the mixed Q_tot / n_agents of "
        "EPyMARL and q_learner, so it is not on target_mean's scale")


def mixer_calls(learner, batch):
    """Train once; the contexts of the live mixer's two calls: real TD [B, T, C], imagined TD
    [B, S, H, C]."""
    calls = []
    forward = learner.mixer.forward
    learner.mixer.forward = lambda agent_qs, states: calls.append(states.detach()) or forward(agent_qs, states)
    torch.manual_seed(123)
    learner.train(batch, t_env=0, episode_num=0)
    return calls


def test_imagination_starts_subsamples_imagined_td_only():
    """imagination_starts = k: real TD still reads every step, imagined TD k distinct slots per
    episode, whose contexts equal those a full pass computes there (rollouts from different
    slots are independent), so the subsample is an unbiased part of the full imagined loss."""
    batch, k = full_batch(), 3
    full_real, full_imagined = mixer_calls(make_learner(0), batch)
    assert full_imagined.shape[:3] == (batch.batch_size, batch.max_seq_length, HORIZON)

    learner = make_learner(0, imagination_starts=k)
    picks = []
    sample_starts = learner._sample_starts
    learner._sample_starts = lambda start_mask: picks.append(sample_starts(start_mask)) or picks[-1]
    real, imagined = mixer_calls(learner, batch)
    (starts,) = picks
    assert torch.equal(real, full_real)
    assert starts.shape == (batch.batch_size, k)
    assert all(len(set(row.tolist())) == k for row in starts)
    index = starts.view(*starts.shape, 1, 1).expand(-1, -1, *full_imagined.shape[2:])
    torch.testing.assert_close(imagined, full_imagined.gather(1, index))


def test_imagination_starts_prefers_valid_slots():
    """Sampled start slots come from the valid ones (filled, before a terminal) while an episode
    has at least k of them."""
    learner = make_learner(0, imagination_starts=3)
    lengths = torch.tensor([6, 3, 6, 4])  # transitions; slots 0..length are valid starts
    start_mask = (torch.arange(7) <= lengths.unsqueeze(1)).float().unsqueeze(-1)
    torch.manual_seed(0)
    seen = torch.zeros(4, 7)
    for _ in range(50):
        seen.scatter_add_(1, learner._sample_starts(start_mask), torch.ones(4, 3))
    assert torch.equal(seen > 0, start_mask.squeeze(-1) > 0)


@pytest.mark.parametrize("overrides", [dict(), dict(target_context=True, reward_head_target="scaled"),
                                       dict(reward_trunk="own", imagined_td_lambda=1.0)])
def test_save_then_load_resumes_exactly(tmp_path, overrides):
    """A fresh learner loaded from a checkpoint has identical live and target Qs, world model
    (and its target copies), optimiser states, counters and reward statistics; one more update
    on each gives identical networks."""
    batch = make_batch()
    saved = make_learner(0, target_update_interval_or_tau=2, sale_refresh_interval=2, **overrides)
    for update in range(3):
        saved.train(batch, t_env=update, episode_num=update)
    saved.save_models(str(tmp_path))
    assert set(os.listdir(tmp_path)) == {"agent.th", "target_agent.th", "mixer.th", "target_mixer.th",
                                         "world_model.th", "opt.th", "wm_opt.th", "learner_state.th"}
    loaded = make_learner(1, target_update_interval_or_tau=2, sale_refresh_interval=2, **overrides)
    loaded.load_models(str(tmp_path))

    with torch.no_grad():
        for mac in ("mac", "target_mac"):
            torch.testing.assert_close(getattr(loaded, mac).forward_all(batch),
                                       getattr(saved, mac).forward_all(batch), rtol=0, atol=0)
        obs, hidden = batch["obs"], torch.randn(*batch["obs"].shape[:3], SMALL["hidden_dim"])
        torch.testing.assert_close(loaded.model.world_model.observe(obs, hidden),
                                   saved.model.world_model.observe(obs, hidden), rtol=0, atol=0)
    for name in ("mixer", "target_mixer"):
        assert state_equal(getattr(loaded, name), getattr(saved, name)), name
    for name in ("world_model", "rollout_encoder", "joint_sale"):
        assert state_equal(getattr(loaded.model, name), getattr(saved.model, name)), name
    assert len(saved.optimisers) == len(loaded.optimisers) == 2
    for saved_optimiser, loaded_optimiser in zip(saved.optimisers, loaded.optimisers):
        saved_state = saved_optimiser.state_dict()["state"]
        loaded_state = loaded_optimiser.state_dict()["state"]
        assert saved_state.keys() == loaded_state.keys() and saved_state
        for key, state in saved_state.items():
            for field, value in state.items():
                torch.testing.assert_close(loaded_state[key][field], value, rtol=0, atol=0)
    assert (loaded.training_steps, loaded.last_target_update_step, loaded.target_range) == \
        (saved.training_steps, saved.last_target_update_step, saved.target_range)
    if overrides.get("target_context"):
        for name, module in saved.target_model.parts().items():
            assert state_equal(loaded.target_model.parts()[name], module), name
            assert not state_equal(saved.model.parts()[name], module), name  # a real copy
        loaded_scale, saved_scale = loaded.model.reward_scale, saved.model.reward_scale
        assert loaded_scale.count == saved_scale.count and saved_scale.count > 1
        assert torch.equal(loaded_scale.var, saved_scale.var) and torch.equal(loaded_scale.mean, saved_scale.mean)

    for learner in (saved, loaded):
        torch.manual_seed(5)
        learner.train(batch, t_env=10, episode_num=3)
    assert state_equal(loaded.mixer, saved.mixer)
    for name in ("world_model", "rollout_encoder", "joint_sale"):
        assert state_equal(getattr(loaded.model, name), getattr(saved.model, name)), name
    assert state_equal(loaded.mac.agent, saved.mac.agent)
    assert state_equal(loaded.target_mac.agent, saved.target_mac.agent)


@pytest.mark.parametrize("name", ["agent.th", "world_model.th", "wm_opt.th", "learner_state.th"])
def test_a_damaged_checkpoint_file_is_named(tmp_path, name):
    make_learner(0).save_models(str(tmp_path))
    with open(tmp_path / name, "r+b") as f:
        f.truncate(10)
    with pytest.raises(RuntimeError, match=f"{name} is damaged"):
        make_learner(1).load_models(str(tmp_path))


def test_fixed_encoders_are_frozen_and_outside_every_optimiser():
    learner = make_learner(0)
    optimised = {id(p) for opt in learner.optimisers
                 for group in opt.adam.param_groups for p in group["params"]}
    for mac in (learner.mac, learner.target_mac):
        for name in ("fixed_encoder", "fixed_target_encoder"):
            for param in getattr(mac.agent, name).parameters():
                assert not param.requires_grad and id(param) not in optimised, name
    for module in (learner.target_mac.agent, learner.target_mixer):
        assert not any(id(p) in optimised for p in module.parameters())


def test_every_trainable_parameter_is_in_exactly_one_parameter_group():
    """td_params and model_params are disjoint and cover every trainable parameter; the live
    SALE encoders, world model and joint SALE are model parameters; the rollout encoder, agent
    GRU/Q head and mixer are TD parameters."""
    learner = make_learner(0)
    td, model = {id(p) for p in learner.td_params}, {id(p) for p in learner.model_params}
    assert not td & model
    agent = learner.mac.agent
    parts = learner.model
    trainable = [p for module in (agent, learner.mixer, parts.world_model, parts.rollout_encoder,
                                  parts.joint_sale) for p in module.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == td | model
    for module in (agent.encoder, parts.world_model, parts.joint_sale):
        assert all(id(p) in model for p in module.parameters())
    for module in (agent.rnn, agent.fc1, agent.q_out, learner.mixer, parts.rollout_encoder):
        assert all(id(p) in td for p in module.parameters())
    td_adam, model_adam = (optimiser.adam for optimiser in learner.optimisers)
    assert len(td_adam.param_groups[0]["params"]) == len(learner.td_params)
    assert len(model_adam.param_groups[0]["params"]) == len(learner.model_params)


def test_fixed_encoder_refresh_order():
    """Every sale_refresh_interval updates: fixed target <- old fixed, fixed <- live (after the
    update); the target agents always hold the live agents' copies, also right after a hard
    target update, so their fixed target differs from the live encoder."""
    learner = make_learner(0, target_update_interval_or_tau=3, sale_refresh_interval=2)
    batch = make_batch()
    live, target = learner.mac.agent, learner.target_mac.agent
    for update in range(1, 7):
        old_fixed = copy.deepcopy(live.fixed_encoder)
        learner.train(batch, t_env=update, episode_num=update)
        if update % 2 == 0:
            assert state_equal(live.fixed_target_encoder, old_fixed)
            assert state_equal(live.fixed_encoder, live.encoder)
        else:
            assert state_equal(live.fixed_encoder, old_fixed)
            assert not state_equal(live.fixed_encoder, live.encoder)
        assert state_equal(target.fixed_target_encoder, live.fixed_target_encoder)
        assert state_equal(target.fixed_encoder, live.fixed_encoder)
        if update >= 2:
            assert not state_equal(target.fixed_target_encoder, live.encoder)
        assert target.read_target_encoder and not live.read_target_encoder


def generation_mismatches(learner, updates=12):
    """Updates after which the target agents' Q head reads, through its fixed target encoder, an
    encoder other than the fixed encoder it was trained with (that of the last hard copy's update)."""
    batch = make_batch()
    live, target = learner.mac.agent, learner.target_mac.agent
    trained_with = copy.deepcopy(live.fixed_encoder)
    mismatches = []
    for update in range(1, updates + 1):
        used = copy.deepcopy(live.fixed_encoder)  # what this update's live Q head reads
        learner.train(batch, t_env=update, episode_num=update)
        if learner.last_target_update_step == learner.training_steps:
            trained_with = used
        if not state_equal(target.fixed_target_encoder, trained_with):
            mismatches.append(update)
    return mismatches


def test_encoder_refresh_with_the_target_copy_keeps_generations_matched():
    """sale_refresh_interval=null (the default, TD7): after every update the target Q head reads
    the encoder generation it was trained with. An interval other than the target interval (the
    previous 250 vs 200, here 2 vs 3) does not: the check sees that."""
    assert _config("sale_mb")["sale_refresh_interval"] is None
    aligned = make_learner(0, target_update_interval_or_tau=3)
    assert generation_mismatches(aligned) == []
    assert not state_equal(aligned.mac.agent.fixed_encoder, aligned.mac.agent.fixed_target_encoder)
    assert generation_mismatches(make_learner(0, target_update_interval_or_tau=3,
                                              sale_refresh_interval=2)) != []


# =================================================================================================
# 7b. Learning changes of issue 9 (each a key; the defaults keep the previous behaviour)
def zero_reward_batch(first_reward=None):
    """full_batch with every reward 0, or one reward of ``first_reward`` (episode 0, step 2)."""
    batch = full_batch()
    rewards = batch.data.transition_data["reward"]
    rewards.zero_()
    if first_reward is not None:
        rewards[0, 2] = first_reward
    return batch


@pytest.mark.parametrize("target, bounded", [("td", False), ("raw", True), ("symlog", True),
                                             ("scaled", True)])
def test_reward_head_loss_stays_bounded_when_the_first_reward_arrives(target, bounded):
    """After 100k zero rewards (the running statistics they leave) the first reward of 1: the
    reward head's loss on that batch stays below (1 / reward_scale_floor)^2 = 100 with raw,
    symlog and scaled targets; the standardised TD rewards (td, the default) blow it past 1000."""
    learner = make_learner(0, reward_head_target=target, wm_warmup=1000)
    for _ in range(100):
        learner.rew_ms.update(torch.zeros(1000, 1))
        if learner.model.reward_scale is not None:
            learner.model.reward_scale.update(torch.zeros(1000, 1))
    learner.train(zero_reward_batch(first_reward=1.0), t_env=0, episode_num=0)
    (loss,) = logged(learner, "wm_reward_loss")
    floor = learner.args.reward_scale_floor
    assert (loss < (1 / floor) ** 2) == bounded, loss
    assert bounded or loss > 1000


@pytest.mark.parametrize("target", ["td", "raw", "symlog", "scaled"])
def test_imagined_rewards_map_back_to_the_rewards_td_learns_from(target):
    """The reward head's targets, read back by td_rewards, are TD's rewards: imagined TD and
    real TD use the same units whatever the head fits."""
    learner = make_learner(0, reward_head_target=target)
    raw = make_batch()["reward"][:, :-1]
    mask = torch.ones_like(raw)
    td = learner.rew_ms.standardise(raw, mask)
    head_targets = learner.model.reward_targets(raw, td, mask)
    assert torch.allclose(learner.model.td_rewards(head_targets, learner._td_reward_units), td,
                          atol=1e-5)


@pytest.mark.parametrize("target", ["raw", "symlog"])
def test_clamped_imagined_rewards_keep_imagined_td_bounded_while_rewards_are_rare(target):
    """After 100k zero rewards TD's running std is ~1e-4, so a raw or symlog head's small errors,
    mapped into TD's units, become rewards of thousands: imagined TD's loss on a batch of zero
    rewards explodes (what made two A/B seeds of these heads never learn). With
    clamp_imagined_rewards the imagined rewards stay in the batch's real range and the loss stays
    at the real TD loss's order."""
    losses = {}
    for clamp in (False, True):
        learner = make_learner(0, reward_head_target=target, wm_warmup=0, clamp_imagined_rewards=clamp)
        for _ in range(100):
            learner.rew_ms.update(torch.zeros(1000, 1))
        learner.train(zero_reward_batch(), t_env=0, episode_num=0)
        (losses[clamp],), (td,) = logged(learner, "imagined_td_loss"), logged(learner, "td_loss")
    assert losses[False] > 1e4 * td
    assert losses[True] < 10 * td


def test_model_update_interval_trains_the_model_and_imagined_td_every_k_updates(monkeypatch):
    """k=3 over 7 updates: the world-model loss and imagined TD run at updates 0, 3, 6 only; in
    between the world model and the SALE encoders do not change, while the agents do."""
    learner = make_learner(0, model_update_interval=3)
    calls = {"world_model.loss": 0}
    loss = learner.model.world_model.loss

    def counted_loss(*args, **kwargs):
        calls["world_model.loss"] += 1
        return loss(*args, **kwargs)

    monkeypatch.setattr(learner.model.world_model, "loss", counted_loss)
    batch = full_batch()
    for update in range(7):
        before = copy.deepcopy((learner.model.world_model, learner.mac.agent.encoder,
                                learner.mac.agent.rnn))
        learner.train(batch, t_env=update, episode_num=update)
        model_trained = update % 3 == 0
        assert state_equal(before[0], learner.model.world_model) != model_trained, update
        assert state_equal(before[1], learner.mac.agent.encoder) != model_trained, update
        assert not state_equal(before[2], learner.mac.agent.rnn), update
    assert calls["world_model.loss"] == 3
    # the learner logs from model updates only (every log then holds every term)
    steps = {key: [t for t, _ in learner.logger.stats[key]] for key in ("imagined_td_loss", "td_loss", "wm_loss")}
    assert steps["imagined_td_loss"] == steps["td_loss"] == steps["wm_loss"] == [0, 3, 6]


def test_imagined_td_gate_weighs_imagined_td_by_the_models_error():
    """imagined_td_gate = g: imagined TD enters the loss at lambda_img * exp(-KL / g), KL the
    batch's world-model KL term; without a gate at lambda_img."""
    for gate in (None, 0.5):
        learner = make_learner(0, imagined_td_gate=gate)
        learner.train(full_batch(), t_env=0, episode_num=0)
        (kl,), (weight,) = logged(learner, "wm_kl_loss"), logged(learner, "imagined_td_weight")
        expected = 0.5 if gate is None else 0.5 * math.exp(-kl / gate)
        assert weight == pytest.approx(expected, rel=1e-5)
        assert gate is None or weight < 0.4  # the untrained model's KL is well above 0.1 nats
        (loss,), (td,), (img,) = (logged(learner, key) for key in ("loss", "td_loss", "imagined_td_loss"))
        model = sum(logged(learner, key)[0] for key in ("wm_loss", "joint_sale_loss", "agent_sale_loss"))
        assert loss == pytest.approx(td + weight * img + model, rel=1e-5)


def test_imagined_td_lambda_expands_the_imagined_rewards_to_the_rollouts_end(monkeypatch):
    """imagined_td_lambda = 1: imagined TD's target at step k is the rollout's imagined rewards
    from k to the end (discounted, weighted by the predicted continuations), then the target
    Q_tot after the last step, along each (episode, start slot)'s own steps. With rollout_depth 1
    value expansion is the one-step target: the same update bit for bit."""
    import learners.sale_mb_learner as learner_module
    calls, imagined_rewards = [], []
    returns, td_rewards = learner_module.lambda_returns, None

    def recorded_returns(*args):
        calls.append((args, returns(*args)))
        return calls[-1][1]

    def recorded_rewards(*args):
        imagined_rewards.append(td_rewards(*args))  # [B, S, H, 1]
        return imagined_rewards[-1]

    monkeypatch.setattr(learner_module, "lambda_returns", recorded_returns)
    learner = make_learner(0, imagined_td_lambda=1.0, wm_warmup=0)
    td_rewards = learner.model.td_rewards
    monkeypatch.setattr(learner.model, "td_rewards", recorded_rewards)
    learner.train(full_batch(), t_env=0, episode_num=0)
    ((rewards, continues, next_values, gamma, lam), targets), = calls
    (by_slot,) = imagined_rewards
    assert torch.equal(rewards, by_slot.flatten(0, 1))  # one row per (episode, slot): its H steps
    horizon = learner.args.rollout_depth
    assert lam == 1.0 and rewards.shape[1:] == (horizon, 1) and rewards.shape[0] > 1
    for row in range(rewards.shape[0]):
        expected = next_values[row, -1]
        for k in reversed(range(horizon)):
            expected = rewards[row, k] + gamma * continues[row, k] * expected
            assert targets[row, k] == pytest.approx(expected.item(), rel=1e-5, abs=1e-6), (row, k)

    after = {}
    for lam in (0.0, 1.0):
        depth_1 = make_learner(0, imagined_td_lambda=lam, wm_warmup=0, rollout_depth=1)
        for update in range(2):
            depth_1.train(full_batch(), t_env=update, episode_num=update)
        after[lam] = depth_1.mac.agent
    assert state_equal(after[0.0], after[1.0])


@pytest.mark.parametrize("alg", ["sale_mb", "sale_mb_no_wm"])
def test_target_context_moves_only_when_the_targets_refresh(alg):
    """target_context=True: the target mixer's context c^{t+1} stays the same over updates of the
    live networks (world model, joint SALE, rollout encoder, agents) until the hard target copy
    after update 3, then changes. The default (False) reads live networks: it moves every update."""
    learner = make_learner(0, alg=alg, target_context=True, target_update_interval_or_tau=3)
    batch = full_batch()
    target_contexts = [mixer_contexts(learner, batch)[1] for _ in range(4)]
    assert all(torch.equal(target_contexts[0], context) for context in target_contexts[1:3])
    assert not torch.equal(target_contexts[0], target_contexts[3])
    live = make_learner(0, alg=alg, target_update_interval_or_tau=3)
    assert not torch.equal(mixer_contexts(live, batch)[1], mixer_contexts(live, batch)[1])


@pytest.mark.parametrize("overrides", [dict(mixer_inputs=["state", "sale"]), dict(rollout_depth=1)])
def test_cheaper_foresight_settings_keep_imagined_td(overrides):
    """Foresight off (mixer_inputs without it: the mixer reads [s, z_s] and the rollout encoder
    gets no gradient) or one step deep (the encoder reads one imagined step and is trained):
    imagined TD still runs and trains the agents."""
    learner = make_learner(0, **overrides)
    live, _ = mixer_contexts(learner, full_batch())
    foresight_off = "mixer_inputs" in overrides
    assert live.shape[-1] == STATE_DIM + SMALL["sale_dim"] + (0 if foresight_off else SMALL["imagination_dim"])
    assert math.isfinite(logged(learner, "imagined_td_loss")[0])
    assert has_gradient(learner.model.rollout_encoder) != foresight_off
    assert has_gradient(learner.mac.agent.rnn)


# =================================================================================================
# 8. Gradient routes (spec section 4): one loss at a time, by zeroing the others' weights
NO_MODEL_LOSS = dict(recon_loss_weight=0.0, avail_loss_weight=0.0, kl_weight=0.0,
                     kl_prior_weight=0.0, reward_loss_weight=0.0, continuation_loss_weight=0.0,
                     state_loss_weight=0.0)


def gradients_after_one_update(overrides, detach_td):
    """Train once; with detach_td the mixer's output is detached (no TD gradient at all)."""
    learner = make_learner(0, **overrides)
    if detach_td:
        forward = learner.mixer.forward
        learner.mixer.forward = lambda agent_qs, states: forward(agent_qs, states).detach()
    learner.train(make_batch(), t_env=0, episode_num=0)
    return learner


def has_gradient(module):
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def parts(learner):
    agent, wm = learner.mac.agent, learner.model.world_model
    return {
        "agent_td": [agent.fc1, agent.rnn, agent.hidden_proj, agent.q_hidden, agent.q_state,
                     agent.q_state_action, agent.q_action, agent.q_out],
        "mixer": [learner.mixer], "rollout_encoder": [learner.model.rollout_encoder],
        "world_model": [wm.posterior, wm.obs_decoder, wm.avail_decoder, wm.action_embed,
                        wm.transition, wm.prior_head, wm.reward_head, wm.continuation_head,
                        wm.state_decoder],
        "joint_sale": [learner.model.joint_sale], "agent_encoder": [agent.encoder],
        "fixed": [agent.fixed_encoder, agent.fixed_target_encoder],
    }


@pytest.mark.parametrize("loss, overrides, detach_td, trained", [
    ("td", dict(NO_MODEL_LOSS, sale_loss_weight=0.0), False, {"agent_td", "mixer", "rollout_encoder"}),
    ("world_model", dict(sale_loss_weight=0.0), True, {"world_model"}),
    ("sale", dict(NO_MODEL_LOSS, sale_loss_weight=1.0), True, {"joint_sale", "agent_encoder"}),
])
def test_each_loss_trains_only_its_own_networks(loss, overrides, detach_td, trained):
    """Real + imagined TD train the agents' GRU/Q head, the mixer and the rollout encoder only;
    the world-model loss trains its posterior, prior, heads and E, not F, G or the agents; the
    SALE losses train F, G and the agents' live encoders, not the posterior. Fixed encoders
    never get a gradient."""
    learner = gradients_after_one_update(overrides, detach_td)
    assert "imagined_td_loss" in learner.logger.stats
    for name, modules in parts(learner).items():
        for module in modules:
            expected = name in trained
            verdict = "gets no" if expected else "gets a"
            assert has_gradient(module) == expected, f"{loss} loss: {name} {module} {verdict} gradient"
    for module in parts(learner)["fixed"]:
        assert all(p.grad is None for p in module.parameters())


@pytest.mark.parametrize("reward_trunk", ["shared", "own"])
def test_the_reward_loss_moves_the_transition_trunk_only_when_it_shares_it(reward_trunk):
    """The reward loss alone (every other loss weight 0, no TD gradient): with the shared trunk it
    trains the trunk the prior and the continuation read; with reward_trunk=own only the reward's
    own MLP and what feeds both (the posterior's latents, E), never the trunk or the other heads."""
    learner = gradients_after_one_update(dict(NO_MODEL_LOSS, sale_loss_weight=0.0, reward_loss_weight=1.0,
                                              reward_trunk=reward_trunk), detach_td=True)
    wm = learner.model.world_model
    assert (len(list(wm.reward_head.parameters())) == 4) == (reward_trunk == "own")  # an MLP, or a linear head
    assert has_gradient(wm.reward_head) and has_gradient(wm.posterior) and has_gradient(wm.action_embed)
    assert has_gradient(wm.transition) == (reward_trunk == "shared")
    assert not has_gradient(wm.prior_head) and not has_gradient(wm.continuation_head)


# =================================================================================================
# 9. End-to-end runs of every config through the real entry point on LBF
LBF_RUN = [*TINY, "t_max=1000", "wm_warmup=2"]
SHORT_EPISODES = "env_args.key=lbforaging:Foraging-5x5-2p-1f-v3"  # ends early: padded batches
WM_TERMS = ["wm_recon_loss", "wm_avail_loss", "wm_kl_loss", "wm_prior_kl_loss", "wm_reward_loss",
            "wm_continuation_loss", "wm_loss"]
# {H}: the config's rollout_depth (the open-loop errors are logged after 1 and after H steps)
ERRORS = [f"wm_{kind}_error_{depth}step" for kind in ("latent", "reward") for depth in ("1", "{H}")]
STATE = ["wm_state_loss", "wm_state_error_1step", "wm_state_error_{H}step"]
IMAGINED = ["imagined_td_loss", "imagined_reward_mean", "imagined_continuation_mean"]
SALE = ["joint_sale_loss", "agent_sale_loss", "joint_sale_std"]
ALWAYS = ["td_loss", "td_error_abs", "loss", "grad_norm", "wm_grad_norm", "q_taken_mean",
          "target_mean", "return_mean", "test_return_mean"]


# Every part on every update, with foresight read by the mixer (the defaults before issue 9's A/B)
EVERY_PART = ["model_update_interval=1", f"rollout_depth={HORIZON}", "imagination_starts=8",
              "mixer_inputs=['state','sale','foresight']"]


@pytest.mark.parametrize("alg, extra, present, absent", [
    ("sale_mb", [], WM_TERMS + ERRORS + STATE + IMAGINED + SALE, []),
    ("sale_mb", EVERY_PART, WM_TERMS + ERRORS + STATE + IMAGINED + SALE, []),
    ("sale_mb_no_wm", [], ["joint_sale_loss", "agent_sale_loss"], WM_TERMS + ERRORS + STATE + IMAGINED),
    ("sale_mb_no_sale", [], WM_TERMS + ERRORS + STATE + IMAGINED, SALE),
    ("sale_mb_no_klbal", [], WM_TERMS + ERRORS + STATE + IMAGINED + SALE, []),
    ("sale_mb_no_state", [], WM_TERMS + ERRORS + IMAGINED + SALE, STATE),
], ids=["sale_mb", "sale_mb-every-part", "no_wm", "no_sale", "no_klbal", "no_state"])
def test_every_config_trains_end_to_end_and_logs_its_metrics(tmp_path, alg, extra, present, absent):
    """`--config=<alg> --env-config=lbf` completes and Sacred's metrics.json holds the metrics
    that belong to the variant (sale_mb: every world-model term, SALE losses, real and imagined
    TD, 1- and H-step prediction errors) and none of those it does not have. sale_mb runs the
    lbf file's own task (the main job), as shipped and with every part on every update; the
    ablations a small task whose episodes end early."""
    overrides = [*LBF_RUN, *extra] if alg == "sale_mb" else [*LBF_RUN, SHORT_EPISODES]
    result = run_main(alg, "lbf", tmp_path, overrides, timeout=None)  # no wall-clock limit
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = sacred_runs(tmp_path, alg)
    assert read_json(run_dir, "run.json")["status"] == "COMPLETED"
    config = read_json(run_dir, "config.json")
    assert config["learner"] == "sale_mb_learner" and config["name"] == alg
    if alg == "sale_mb_no_klbal":
        assert config["kl_balance"] is None
    metrics = read_json(run_dir, "metrics.json")
    present, absent = ([key.format(H=config["rollout_depth"]) for key in keys] for keys in (present, absent))
    for key in ALWAYS + present:
        assert key in metrics, f"{key} missing from metrics.json of {alg}: {sorted(metrics)}"
        assert all(math.isfinite(v) for _, v in metric(metrics, key)), key
    for key in absent:
        assert key not in metrics, f"{alg} should not log {key}"
    assert metric(metrics, "td_loss")[-1][0] > 500


# =================================================================================================
# 10. Inconsistent configs stop at start-up
# List values are Python literals on the command line (run_config.parse_value runs
# ast.literal_eval); subprocess passes each token as one argument, so no shell quoting is needed.
@pytest.mark.parametrize("overrides, message", [
    (["world_model=null", "mixer_inputs=['state','foresight']"], "mixer_inputs has 'foresight' but world_model=null"),
    (["use_sale=False"], "mixer_inputs has 'sale' but use_sale=False"),
    (["mixer_inputs=['state','sale','z_sa']"], "choose a non-empty list from"),
    (["mixer_inputs=[]"], "choose a non-empty list from"),
    (["use_state_decoder=False"], "mixer_inputs has 'state' but use_state_decoder=False"),
    (["kl_balance=1.5"], "kl_balance must be in [0, 1]"),
    (["mixer=qmix"], "set mixer=qmix_sale"),                      # mixer is honoured or refused
    (["use_rnn=False"], "use_rnn=False is not supported"),        # sale_agent is always a GRU
    (["obs_individual_obs=True"], "does not read obs_individual_obs"),
    (["target_update_interval_or_tau=1"], "sale_refresh_interval=null refreshes"),
    (["imagined_td_lambda=1.5"], "imagined_td_lambda must be in [0, 1]"),
    (["reward_trunk=separate"], "reward_trunk must be 'shared' or 'own'"),
])
def test_inconsistent_configs_stop_at_start_up(tmp_path, overrides, message):
    """Exit code 2, a message naming the problem, no traceback, nothing written."""
    cmd = [sys.executable, MAIN, "--config=sale_mb", "--env-config=lbf", "with",
           f"local_results_path={tmp_path}", *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("tokens", [
    ["world_model=null", "mixer_inputs=['state','sale']"],                 # sale_mb_no_wm
    ["agent=rnn", "use_sale=False", "mixer_inputs=['state','foresight']"],  # sale_mb_no_sale
    ["kl_balance=null"],                                                    # sale_mb_no_klbal
    ["use_state_decoder=False", "mixer_inputs=['sale','foresight']"],       # sale_mb_no_state
    ["imagination_starts=null"],                                            # every step
    ["mixer_inputs=['state','sale']"],                                      # no foresight
    ["rollout_depth=1"],                                                    # foresight depth 1
])
def test_each_ablation_can_be_set_on_the_command_line(tokens):
    """The ablations' combinations (and the documented nulls) pass every start-up check."""
    overrides = parse_overrides(tokens)
    config = build_config("sale_mb", "lbf", overrides)
    assert all(config[key] == value for key, value in overrides)
