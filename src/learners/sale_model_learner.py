"""SALE-MB's model learning: what the TD learner's context and imagined data come from.

Owns the world model (``world_model``, null: none), the joint SALE encoders F, G
(``use_sale``; they read the posterior means Z, or the real state without a world model), the
rollout encoder (foresight) and the agents' own SALE encoders when the agent has them (found by
capability: an agent with ``sale_loss``). Two calls per update:
- ``update(episodes, target_hidden)``: the model losses on the real episodes (ELBO terms with KL
  balancing, the joint SALE loss ||G(F(sg Z^t), a^t) - sg F(Z^{t+1})||^2, each agent's SALE
  loss) and what TD reads from them: Z^t and F(Z^t), both detached;
- ``imagine(mac, latents, agent_qs, hidden, avail)``: roll the world model H steps from every
  slot with the agents' greedy policy, the agents run by their MAC (``mac.forward`` on an
  ``EpisodeBatch`` of imagined steps, so the MAC builds their inputs), no gradient; then the
  foresight of the start and of each imagined step (the rollout encoder, with gradient).
The gradients of these losses reach only the networks listed by ``model_parameters()``; the
rollout encoder (``td_parameters()``) is trained by TD through the foresight. Part of the SALE-MB
plugin: imports torch, EPyMARL's ``EpisodeBatch`` and the plugin's own files.
"""
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from components.episode_buffer import EpisodeBatch
from modules.agents.sale_agent import StateActionEncoder
from modules.world_models import REGISTRY as world_model_REGISTRY
from modules.world_models.rollout_encoder import RolloutEncoder
from utils.running_mean_std import RunningMeanStd
from utils.td_utils import flat_size, greedy_actions, masked_mean, symexp, symlog

REWARD_HEAD_TARGETS = ("td", "raw", "symlog", "scaled")


class SALEModelLearner:
    def __init__(self, mac, scheme, args):
        self.args, self.scheme = args, scheme
        self.n_agents, self.n_actions = args.n_agents, args.n_actions
        self.agent_sale = hasattr(mac.agent, "sale_loss")
        self.world_model, self.rollout_encoder, self.joint_sale = None, None, None
        if args.world_model is not None:
            self.world_model = world_model_REGISTRY[args.world_model](scheme, args)
            self.rollout_encoder = RolloutEncoder(self.world_model.joint_latent_dim,
                                                  args.imagination_dim)
        # "scaled": the reward head's own running statistics (scale only, floored)
        self.reward_scale = (RunningMeanStd(shape=(1,), device=args.device)
                             if args.reward_head_target == "scaled" else None)
        if args.use_sale:
            sale_input = (self.world_model.joint_latent_dim if self.world_model is not None
                          else flat_size(args.state_shape))
            self.joint_sale = StateActionEncoder(sale_input, self.n_agents * self.n_actions,
                                                 args.sale_dim, args.sale_hidden_dim)

    # --- parameters, devices, checkpoints --------------------------------------------------------
    def model_parameters(self, agent):
        """What the model losses train: the agents' live SALE encoders, world model, joint SALE."""
        params = list(agent.encoder_parameters()) if self.agent_sale else []
        for module in (self.world_model, self.joint_sale):
            if module is not None:
                params += list(module.parameters())
        return params

    def td_parameters(self):
        """What TD trains here: the rollout encoder (through the foresight)."""
        return [] if self.rollout_encoder is None else list(self.rollout_encoder.parameters())

    def parts(self):
        """The modules of this run that exist, by the names world_model.th holds."""
        parts = {"world_model": self.world_model, "rollout_encoder": self.rollout_encoder,
                 "joint_sale": self.joint_sale}
        return {name: module for name, module in parts.items() if module is not None}

    def refresh_encoders(self, agent, target_agent, refresh):
        """TD7's fixed encoders: when ``refresh`` (the learner's schedule, ``sale_refresh_interval``)
        the live agents refresh theirs; then the target agents take the live agents' copies."""
        if not self.agent_sale:
            return
        if refresh:
            agent.refresh_fixed_encoders()
        target_agent.copy_fixed_encoders(agent)

    # --- model losses on the real episodes -------------------------------------------------------
    def update(self, episodes, agent, target_hidden, train=True):
        """Model losses on the real episodes. ``episodes``: the TD learner's tensors (obs
        [B, T+1, n, o], state, actions_onehot, avail, model_rewards (the reward head's targets,
        see ``reward_targets``), terminated, slot_mask, step_mask); ``target_hidden``
        [B, T+1, n, H] the target agents' recurrent states. Returns (loss, stats, latents Z
        [B, T+1, n*latent] or None, sale F(.) [B, T+1, sale_dim] or None), latents and sale
        detached. ``train=False`` (``model_update_interval``): no loss, only Z and F(Z)."""
        args, e = self.args, episodes
        loss = torch.zeros((), device=e.obs.device)
        stats = {}
        if not train:
            latents = self.posterior_means(e.obs, target_hidden)
            return loss, stats, latents, self.embed_sale(latents if latents is not None else e.state)
        latents = None
        if self.world_model is not None:
            posterior = self.world_model.observe(e.obs, _previous(target_hidden))
            latents = posterior[0].flatten(-2).detach()
        sale_state, sale_action = None, None
        if self.joint_sale is not None:
            sale_state = self.joint_sale.embed(latents if latents is not None else e.state)
            sale_action = self.joint_sale.embed_action(sale_state[:, :-1],
                                                       e.actions_onehot[:, :-1].flatten(-2))
            stats["joint_sale_loss"] = masked_mean(
                (sale_action - sale_state[:, 1:].detach()).pow(2).sum(-1, keepdim=True), e.step_mask)
            loss = loss + args.sale_loss_weight * stats["joint_sale_loss"]
        if self.world_model is not None:
            wm_loss, terms = self.world_model.loss(posterior, e.actions_onehot, e.avail, e.obs,
                                                   e.state, e.model_rewards, e.terminated, e.slot_mask,
                                                   e.step_mask, sale_action)
            loss = loss + wm_loss
            stats.update(terms)
            stats["wm_loss"] = wm_loss
        if self.agent_sale:
            stats["agent_sale_loss"] = agent.sale_loss(e.obs, e.actions_onehot,
                                                       live_agent_step_mask(e.avail, e.step_mask))
            loss = loss + args.sale_loss_weight * stats["agent_sale_loss"]
        return loss, stats, latents, None if sale_state is None else sale_state.detach()

    @torch.no_grad()
    def posterior_means(self, obs, target_hidden):
        """Z [B, T+1, n*latent]: the posterior means of obs [B, T+1, n, o] given the target
        agents' states [B, T+1, n, H]; None without a world model."""
        if self.world_model is None:
            return None
        return self.world_model.observe(obs, _previous(target_hidden))[0].flatten(-2)

    # --- the reward head's target ----------------------------------------------------------------
    def reward_targets(self, raw, td_rewards, step_mask):
        """What the reward head fits [B, T, 1] (``reward_head_target``): ``td`` the rewards TD
        learns from (standardised with ``standardise_rewards``), ``raw`` the env's rewards,
        ``symlog`` their symlog, ``scaled`` raw / max(running std, ``reward_scale_floor``) (scale
        only: a zero reward stays zero; updated with the valid steps)."""
        target = self.args.reward_head_target
        if target == "td":
            return td_rewards
        if target == "raw":
            return raw
        if target == "symlog":
            return symlog(raw)
        self.reward_scale.update(raw[step_mask.squeeze(-1) > 0])
        return raw / self._reward_scale()

    def td_rewards(self, predicted, td_units):
        """The reward head's outputs [...] in TD's units: back to env units, then ``td_units``
        (the TD learner's map of raw rewards)."""
        target = self.args.reward_head_target
        if target == "td":
            return predicted
        if target == "symlog":
            return td_units(symexp(predicted))
        if target == "scaled":
            return td_units(predicted * self._reward_scale())
        return td_units(predicted)

    def _reward_scale(self):
        return self.reward_scale.var.sqrt().clamp_min(self.args.reward_scale_floor)

    # --- imagination -----------------------------------------------------------------------------
    def imagine(self, mac, latents, agent_qs, hidden, avail, training_steps):
        """Roll the world model H = ``rollout_depth`` steps from every slot with the live agents'
        greedy policy (``img_epsilon``-random among the predicted available actions), no
        gradient; then the foresight (with gradient). ``latents`` [B, T+1, L], ``agent_qs``
        [B, T+1, n, A] and ``hidden`` [B, T+1, n, H] of the real slots, ``avail`` the real
        masks. Returns (foresight of the real slots [B, T+1, D] or None without a world model,
        rollout or None): the rollout's tensors are [B, T+1, H(+1), ...] (see ``_roll``).
        During ``wm_warmup`` updates there is no rollout and the foresight is zero."""
        if self.world_model is None:
            return None, None
        if training_steps < self.args.wm_warmup:
            return latents.new_zeros(*latents.shape[:2], self.args.imagination_dim), None
        batch_size, slots = latents.shape[:2]
        rows = batch_size * slots
        first_actions = self.policy_actions(agent_qs.detach().reshape(rows, self.n_agents, -1),
                                            avail.reshape(rows, self.n_agents, -1))
        start = latents.reshape(rows, -1)
        rollout = self._roll(mac, start, first_actions, hidden.detach().reshape(rows * self.n_agents, -1))
        foresight = self.rollout_encoder(start, rollout["latents"])  # [rows, H+1, D]
        rollout["foresight"] = foresight
        rollout = {key: None if value is None else value.view(batch_size, slots, *value.shape[1:])
                   for key, value in rollout.items()}
        return rollout["foresight"][:, :, 0], rollout

    @torch.no_grad()
    def _roll(self, mac, start, first_actions, hidden):
        """From Z^t [N, L] with a^t [N, n] and the live agents' h^t [N*n, H]: ``latents``
        [N, H, L], ``rewards`` and ``continuations`` [N, H, 1] of the transitions k-1 -> k,
        ``avail`` [N, H, n, A] of steps 1..H; ``actions`` [N, H, n] taken at steps 0..H-1 (index
        0: a^t); ``greedy_qs`` [N, H-1, n, A] (the live agents' Qs) and ``states`` [N, H-1, S]
        (None without a state decoder) of steps 1..H-1; and the fields of the imagined steps'
        EpisodeBatch (``IMAGINED_FIELDS``, [N, H+1, n, .]: slot k holds step k's decoded
        observation and predicted available actions and the actions taken there; slot 0 holds
        only a^t, slot H no actions). The last step's Qs and state serve only imagined TD, which
        computes them at the slots it starts from."""
        args, horizon = self.args, self.args.rollout_depth
        data = {"obs": start.new_zeros(start.shape[0], horizon + 1, self.n_agents,
                                       self.world_model.obs_dim),
                "actions_onehot": start.new_zeros(start.shape[0], horizon + 1, self.n_agents,
                                                  self.n_actions)}
        data["avail_actions"] = torch.zeros_like(data["actions_onehot"])
        steps = imagined_steps(self.scheme, data)
        mac.hidden_states = hidden
        latent, actions = start, first_actions
        out = {"latents": [], "rewards": [], "continuations": [], "actions": [], "avail": [],
               "states": [], "greedy_qs": []}
        for k in range(1, horizon + 1):
            actions_onehot = F.one_hot(actions, self.n_actions).float()
            data["actions_onehot"][:, k - 1] = actions_onehot
            out["actions"].append(actions)
            step = self.world_model.imagine_step(latent, actions_onehot, self.joint_sale,
                                                 args.rollout_noise)
            latent = step["latent"]
            data["obs"][:, k] = step["obs"]
            data["avail_actions"][:, k] = step["avail"]
            for key, value in (("latents", latent), ("rewards", step["reward"]),
                               ("continuations", step["continuation"]), ("avail", step["avail"])):
                out[key].append(value)
            if k == horizon:
                break
            qs = mac.forward(steps, t=k)
            actions = self.policy_actions(qs, step["avail"])
            out["greedy_qs"].append(qs)
            state = self.decode_state(latent)
            if state is not None:
                out["states"].append(state)
        rollout = {key: torch.stack(values, dim=1) if values else None for key, values in out.items()}
        rollout.update(data)
        return rollout

    @torch.no_grad()
    def decode_state(self, latents):
        """The state decoder's ŝ [..., S] of (imagined) latents; None without one."""
        if self.world_model.state_decoder is None:
            return None
        return self.world_model.decode_state(latents)

    @torch.no_grad()
    def embed_sale(self, latents):
        """F(Z) [..., sale_dim] of (imagined) latents, no gradient; None without joint SALE."""
        return None if self.joint_sale is None else self.joint_sale.embed(latents)

    def policy_actions(self, qs, avail):
        """Greedy actions under the mask [N, n] (epsilon-random among available with img_epsilon)."""
        greedy = greedy_actions(qs, avail).squeeze(-1)
        epsilon = self.args.img_epsilon
        if epsilon <= 0:
            return greedy
        # rows with nothing available (padding) draw from all actions; they are masked later
        weights = torch.where(avail.sum(-1, keepdim=True) > 0, avail, torch.ones_like(avail))
        random_actions = torch.multinomial(weights.reshape(-1, avail.shape[-1]), 1).view_as(greedy)
        explore = torch.rand(greedy.shape, device=qs.device) < epsilon
        return torch.where(explore, random_actions, greedy)

    # --- diagnostics -----------------------------------------------------------------------------
    @torch.no_grad()
    def diagnostics(self, episodes, latents, sale, rollout):
        """Logged with the learner's stats: the joint SALE's spread, the world model's open-loop
        prediction errors, the imagined rewards and continuations."""
        stats = {}
        if sale is not None:
            stats["joint_sale_std"] = sale[episodes.start_mask.squeeze(-1) > 0].std(0).mean()
        if self.world_model is not None:
            stats.update(self.world_model.prediction_errors(
                latents, episodes.actions_onehot, episodes.state, episodes.model_rewards,
                episodes.step_mask, self.args.rollout_depth, self.joint_sale))
        if rollout is not None:
            stats["imagined_reward_mean"] = rollout["rewards"].mean()
            stats["imagined_continuation_mean"] = rollout["continuations"].mean()
        return stats


IMAGINED_FIELDS = ("obs", "actions_onehot", "avail_actions")


def _previous(hidden):
    """h^{t-1} [B, T+1, n, H] for every slot t (zeros before the first) from h^t."""
    return torch.cat([torch.zeros_like(hidden[:, :1]), hidden[:, :-1]], 1)


def imagined_steps(scheme, data):
    """The imagined steps as an EpisodeBatch over existing tensors ``data`` (``IMAGINED_FIELDS``,
    each [N, H+1, n, .]): what a MAC reads to build the agents' inputs at a step."""
    episodes, slots, n_agents = data["obs"].shape[:3]
    return EpisodeBatch(scheme, {"agents": n_agents}, episodes, slots,
                        data=SimpleNamespace(transition_data=data, episode_data={}),
                        device=data["obs"].device)


def live_agent_step_mask(avail, step_mask):
    """[B, T, n, 1]: the valid steps [B, T, 1] of agents that are alive (a dead agent has only the
    no-op, action 0, available)."""
    dead = (avail[:, :-1].sum(-1, keepdim=True) == 1) & (avail[:, :-1, :, :1] == 1)
    return step_mask.unsqueeze(-1) * (~dead).float()
