"""SALE-MB: model-based value decomposition with state-action learned embeddings.

One update on a batch of real episodes (slots t = 0..T, transitions t = 0..T-1):
1. the agents (and the target agents) over the episodes: Q_i for every action, recurrent states h;
2. world model: posterior q(z_i^t | o_i^t, h_i^{t-1}) with h from the target agents, the ELBO
   terms with KL balancing (``vae_world_model``), the joint SALE loss
   ||G(F(sg Z^t), a^t) - sg F(Z^{t+1})||^2 and each agent's SALE loss on its own observations;
3. imagination (no gradient) from every slot with the live world model and the agents' greedy
   policy, read by the rollout encoder into foresight m (the start's and each imagined step's);
4. real TD on every step: Q_tot = qmix_sale(Q_i(a_i^t), c^t) with c^t = [s^t, F(Z^t), m^t],
   double-Q targets from the target networks reading c^{t+1} (detached), optionally clipped to
   the range of targets seen so far (TD7);
5. imagined TD (Dyna-style) on the imagined transitions from every slot or from
   ``imagination_starts`` sampled ones (the agents re-run those with gradient), each weighted by
   the product of the earlier predicted continuations, the mixer reading [s_hat, F(Z_hat), m_hat];
6. one backward pass; Adam for the agent, mixer and rollout encoder (TD), Adam for the world model
   and the SALE encoders (model losses); target networks and TD7's fixed encoders refresh.
Gradient routes: TD trains the agents' GRU and Q heads, the mixer and the rollout encoder; the
world model, F, G and the agents' live encoders get only their own losses (their outputs reach the
TD losses detached). The learner builds its own mixer and world model (EPyMARL has no registry for
either), so it also runs inside an EPyMARL checkout.
"""
import copy
import math
import os

import torch
import torch.nn.functional as F

from components.standarize_stream import RunningMeanStd
from modules.agents.sale_agent import StateActionEncoder
from modules.mixers.qmix_sale import QMixSALE, check_mixer_inputs
from modules.world_models import REGISTRY as world_model_REGISTRY
from modules.world_models.vae_world_model import RolloutEncoder
from utils.rl_utils import build_td_targets, masked_mean, update_targets, valid_step_mask

UNAVAILABLE_Q = -1e7


class SALEMBLearner:
    def __init__(self, mac, scheme, logger, args):
        self.check_config(vars(args))
        self.args, self.mac, self.logger = args, mac, logger
        self.n_agents, self.n_actions = args.n_agents, args.n_actions
        self.agent_has_sale = hasattr(mac.agent, "refresh_fixed_encoders")

        self.mixer = QMixSALE(args)
        self.world_model = None
        self.rollout_encoder = None
        if args.world_model is not None:
            self.world_model = world_model_REGISTRY[args.world_model](scheme, args)
            self.rollout_encoder = RolloutEncoder(self.world_model.joint_latent_dim,
                                                  args.imagination_dim)
        self.joint_sale = None
        if args.use_sale:
            sale_input = (self.world_model.joint_latent_dim if self.world_model is not None
                          else _size(args.state_shape))
            self.joint_sale = StateActionEncoder(sale_input, self.n_agents * self.n_actions,
                                                 args.sale_dim, args.sale_hidden_dim)

        # --- two parameter groups, two optimisers (one when separate_wm_optimiser is False) ---
        agent_params = (mac.agent.q_parameters() if self.agent_has_sale else list(mac.parameters()))
        self.td_params = agent_params + list(self.mixer.parameters())
        self.model_params = []
        if self.agent_has_sale:
            self.model_params += list(mac.agent.encoder_parameters())
        if self.rollout_encoder is not None:
            self.td_params += list(self.rollout_encoder.parameters())
        for module in (self.world_model, self.joint_sale):
            if module is not None:
                self.model_params += list(module.parameters())
        if args.separate_wm_optimiser:
            self.optimiser = torch.optim.Adam(self.td_params, lr=args.lr)
            self.wm_optimiser = (torch.optim.Adam(self.model_params, lr=args.wm_lr)
                                 if self.model_params else None)
        else:
            self.optimiser = torch.optim.Adam(self.td_params + self.model_params, lr=args.lr)
            self.wm_optimiser = None

        self.target_mac = copy.deepcopy(mac)
        if self.agent_has_sale:
            self.target_mac.agent.read_target_encoder = True
        self.target_mixer = copy.deepcopy(self.mixer)

        self.training_steps = 0
        self.last_target_update_step = 0
        self.log_stats_t = -args.learner_log_interval - 1
        self.rew_ms = RunningMeanStd(shape=(1,), device=args.device)
        self.agent_ids = torch.eye(self.n_agents, device=args.device)  # imagined agents' id inputs
        self.target_range = [math.inf, -math.inf]  # min and max of the real TD targets so far

    @staticmethod
    def check_config(config):
        """Refuse inconsistent settings before anything is built (also called at start-up)."""
        if not config["common_reward"]:
            raise ValueError("sale_mb_learner mixes agents into one team value and needs "
                             "common_reward=True")
        inputs = config["mixer_inputs"]
        check_mixer_inputs(inputs)
        if "sale" in inputs and not config["use_sale"]:
            raise ValueError("mixer_inputs has 'sale' but use_sale=False: drop 'sale' from mixer_inputs")
        has_wm = config["world_model"] is not None
        if "foresight" in inputs and not has_wm:
            raise ValueError("mixer_inputs has 'foresight' but world_model=null: foresight comes "
                             "from imagined rollouts; drop it from mixer_inputs")
        if has_wm and "state" in inputs and not config["use_state_decoder"]:
            raise ValueError("mixer_inputs has 'state' but use_state_decoder=False: imagined steps "
                             "have no state to read; drop 'state' or enable the state decoder")
        if config["agent"] == "sale_agent" and config["mac"] != "basic_mac":
            raise ValueError("agent=sale_agent runs under mac=basic_mac (shared parameters)")
        if config["rollout_depth"] < 1:
            raise ValueError(f"rollout_depth must be >= 1, got {config['rollout_depth']}")
        kl_balance = config["kl_balance"]
        if kl_balance is not None and not 0 <= kl_balance <= 1:
            raise ValueError(f"kl_balance must be in [0, 1] (or null for a plain KL), got {kl_balance}")

    # =============================================================================================
    def train(self, batch, t_env, episode_num):
        max_t = batch.max_t_filled()
        if max_t < batch.max_seq_length:
            batch = batch[:, :max_t]
        args = self.args
        obs = batch["obs"].flatten(3)
        state = batch["state"].flatten(2)
        actions = batch["actions"][:, :-1]
        actions_onehot = batch["actions_onehot"]
        avail = batch["avail_actions"].float()
        terminated = batch["terminated"][:, :-1].float()
        rewards = batch["reward"][:, :-1]
        step_mask = valid_step_mask(batch["filled"], terminated)  # transitions [B, T, 1]
        slot_mask = batch["filled"].float()  # slots [B, T+1, 1]
        ended_before = torch.cat([torch.zeros_like(terminated[:, :1]),
                                  terminated.cumsum(dim=1).clamp_max(1)], dim=1)
        start_mask = slot_mask * (1 - ended_before)  # slots to imagine from
        if args.standardise_rewards:
            self.rew_ms.update(rewards[step_mask.squeeze(-1) > 0])
            rewards = (rewards - self.rew_ms.mean) / torch.sqrt(self.rew_ms.var)
        warming_up = self.world_model is not None and self.training_steps < args.wm_warmup
        stats = {}

        # --- agents over the real episodes -----------------------------------------------------
        agent_qs, hidden = _forward_episodes(self.mac, batch)
        with torch.no_grad():
            target_qs, target_hidden = _forward_episodes(self.target_mac, batch)

        # --- world model, joint SALE and per-agent SALE on the real episodes -------------------
        model_loss = torch.zeros((), device=obs.device)
        joint_mean = None
        if self.world_model is not None:
            prev_hidden = torch.cat([torch.zeros_like(target_hidden[:, :1]), target_hidden[:, :-1]], 1)
            posterior = self.world_model.observe(obs, prev_hidden)
            joint_mean = posterior[0].flatten(-2).detach()
        sale_state, sale_action = None, None
        if self.joint_sale is not None:
            sale_state = self.joint_sale.embed(joint_mean if joint_mean is not None else state)
            sale_action = self.joint_sale.embed_action(sale_state[:, :-1],
                                                       actions_onehot[:, :-1].flatten(-2))
            stats["joint_sale_loss"] = masked_mean(
                (sale_action - sale_state[:, 1:].detach()).pow(2).sum(-1, keepdim=True), step_mask)
            model_loss = model_loss + args.sale_loss_weight * stats["joint_sale_loss"]
        if self.world_model is not None:
            wm_loss, terms = self.world_model.loss(posterior, actions_onehot, avail, obs, state,
                                                   rewards, terminated, slot_mask, step_mask,
                                                   sale_action)
            model_loss = model_loss + wm_loss
            stats.update(terms)
            stats["wm_loss"] = wm_loss
        if self.agent_has_sale:
            stats["agent_sale_loss"] = self._agent_sale_loss(obs, actions_onehot, avail, step_mask)
            model_loss = model_loss + args.sale_loss_weight * stats["agent_sale_loss"]

        # --- imagination from every slot and foresight ----------------------------------------
        rollout, foresight = None, None
        if self.world_model is not None:
            if warming_up:
                foresight = obs.new_zeros(*obs.shape[:2], 1, args.imagination_dim)
            else:
                rollout = self._imagine(agent_qs, hidden, joint_mean, avail)
                foresight = rollout["foresight"]  # [B, T+1, H+1, D]
        context = self.mixer.context(
            state=state, sale=None if sale_state is None else sale_state.detach(),
            foresight=None if foresight is None else foresight[:, :, 0])

        # --- real TD on every step ---------------------------------------------------------------
        chosen_qs = torch.gather(agent_qs[:, :-1], 3, actions).squeeze(3)
        q_tot = self.mixer(chosen_qs, context[:, :-1])
        with torch.no_grad():
            next_qs = _double_q(agent_qs[:, 1:], target_qs[:, 1:], avail[:, 1:], args.double_q)
            next_q_tot = self._clip(self.target_mixer(next_qs, context[:, 1:].detach()))
            targets = build_td_targets(rewards, terminated, next_q_tot, args.gamma)
        td_error = q_tot - targets
        stats["td_loss"] = masked_mean(td_error.pow(2), step_mask)
        td_loss = stats["td_loss"]

        # --- imagined TD from all slots, or `imagination_starts` sampled ones ------------------
        if rollout is not None and args.imagined_td_weight > 0:
            starts = self._sample_starts(start_mask)
            stats["imagined_td_loss"] = self._imagined_td_loss(
                _take_all(rollout, starts), _take(agent_qs, starts), _take(hidden, starts),
                _take(target_hidden, starts), _take(context, starts), _take(start_mask, starts))
            td_loss = td_loss + args.imagined_td_weight * stats["imagined_td_loss"]

        # --- one step for each optimiser -------------------------------------------------------
        self.optimiser.zero_grad(set_to_none=True)
        if self.wm_optimiser is not None:
            self.wm_optimiser.zero_grad(set_to_none=True)
        (td_loss + model_loss).backward()
        if self.wm_optimiser is None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.td_params + self.model_params,
                                                       args.grad_norm_clip)
            wm_grad_norm = grad_norm
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.td_params, args.grad_norm_clip)
            wm_grad_norm = torch.nn.utils.clip_grad_norm_(self.model_params, args.model_grad_clip)
            self.wm_optimiser.step()
        self.optimiser.step()
        self._track_target_range(targets, step_mask)

        self.training_steps += 1
        self._refresh_targets()

        if t_env - self.log_stats_t >= args.learner_log_interval:
            stats.update(loss=td_loss + model_loss, grad_norm=grad_norm, wm_grad_norm=wm_grad_norm,
                         td_error_abs=masked_mean(td_error.abs(), step_mask),
                         q_taken_mean=masked_mean(q_tot, step_mask) / self.n_agents,
                         target_mean=masked_mean(targets, step_mask) / self.n_agents)
            if sale_state is not None:
                stats["joint_sale_std"] = sale_state.detach()[start_mask.squeeze(-1) > 0].std(0).mean()
            if self.world_model is not None:
                stats.update(self.world_model.prediction_errors(
                    joint_mean, actions_onehot, state, rewards, step_mask, args.rollout_depth,
                    self.joint_sale))
            if rollout is not None:
                stats["imagined_reward_mean"] = rollout["rewards"].mean()
                stats["imagined_continuation_mean"] = rollout["continuations"].mean()
            for key, value in stats.items():
                self.logger.log_stat(key, value.item() if torch.is_tensor(value) else value, t_env)
            self.log_stats_t = t_env

    # =============================================================================================
    def _agent_sale_loss(self, obs, actions_onehot, avail, step_mask):
        """||g_o(f_o(o^t), a^t) - sg f_o(o^{t+1})||^2 per agent, over valid steps of live agents
        (a dead agent has only the no-op, action 0, available)."""
        agent = self.mac.agent
        z_o = agent.embed(obs)
        predicted = agent.embed_action(z_o[:, :-1], actions_onehot[:, :-1])
        error = (predicted - z_o[:, 1:].detach()).pow(2).sum(-1, keepdim=True)
        dead = (avail[:, :-1].sum(-1, keepdim=True) == 1) & (avail[:, :-1, :, :1] == 1)
        return masked_mean(error, step_mask.unsqueeze(-1) * (~dead).float())

    def _sample_starts(self, start_mask):
        """Slots [B, k] that imagined TD starts from: ``imagination_starts`` = k valid slots per
        episode drawn without replacement (None: every slot)."""
        starts = self.args.imagination_starts
        if starts is None or starts >= start_mask.shape[1]:
            return None
        weights = start_mask.squeeze(-1) + 1e-6  # invalid slots only when too few are valid
        return torch.multinomial(weights, starts)

    def _imagine(self, agent_qs, hidden, joint_mean, avail):
        """Roll the world model H steps from every slot with the live agents' greedy policy (no
        gradient anywhere); add the agents' inputs and Qs at each imagined step and the foresight
        (the rollout encoder, with gradient). Everything is shaped [B, T+1, H(+1), ...]."""
        args = self.args
        batch_size, slots = joint_mean.shape[:2]
        rows, n, n_actions = batch_size * slots, self.n_agents, self.n_actions
        live_h = hidden.detach().reshape(rows * n, -1)
        inputs_per_step, qs_per_step = [], []

        def act(k, obs, avail, last_actions_onehot):
            nonlocal live_h
            inputs = self._agent_inputs(obs, last_actions_onehot)
            q, live_h = self.mac.agent(inputs, live_h)
            inputs_per_step.append(inputs.view(rows, n, -1))
            qs_per_step.append(q.view(rows, n, n_actions))
            return self._policy_actions(qs_per_step[-1], avail)

        first_actions = self._policy_actions(agent_qs.detach().reshape(rows, n, n_actions),
                                             avail.reshape(rows, n, n_actions))
        start = joint_mean.reshape(rows, -1)
        rollout = self.world_model.imagine(start, first_actions, act, args.rollout_depth,
                                           self.joint_sale, args.rollout_noise)
        rollout["inputs"] = torch.stack(inputs_per_step, dim=1)
        rollout["greedy_qs"] = torch.stack(qs_per_step, dim=1)
        rollout["foresight"] = self.rollout_encoder(start, rollout["latents"])
        return {key: None if value is None else value.view(batch_size, slots, *value.shape[1:])
                for key, value in rollout.items()}

    def _imagined_td_loss(self, rollout, agent_qs, hidden, target_hidden, context, start_mask):
        """TD on imagined transitions k = 0..H-1 from the given slots [B, S]; step k weighs
        prod_{j<k} c_hat_j. Step 0 acts from the real slot (real Q, real context); the agents
        re-run the imagined inputs with gradient from their real h^t, the target agents from
        theirs."""
        horizon = self.args.rollout_depth
        batch_size, slots = agent_qs.shape[:2]
        rows = batch_size * slots * self.n_agents
        step_inputs = rollout["inputs"]  # [B, S, H, n, in]
        live_h, target_h = hidden.detach().reshape(rows, -1), target_hidden.reshape(rows, -1)
        live_qs, target_qs = [agent_qs], []
        for k in range(horizon):
            inputs = step_inputs[:, :, k].reshape(rows, -1)
            if k < horizon - 1:
                q, live_h = self.mac.agent(inputs, live_h)
                live_qs.append(q.view(agent_qs.shape))
            with torch.no_grad():
                target_q, target_h = self.target_mac.agent(inputs, target_h)
            target_qs.append(target_q.view(agent_qs.shape))

        sale = None
        if self.joint_sale is not None:
            with torch.no_grad():
                sale = self.joint_sale.embed(rollout["latents"])
        imagined_context = self.mixer.context(state=rollout["states"], sale=sale,
                                              foresight=rollout["foresight"][:, :, 1:])
        contexts = torch.cat([context.unsqueeze(2), imagined_context], dim=2)  # [B, S, H+1, C]

        chosen = torch.gather(torch.stack(live_qs, dim=2), 4,
                              rollout["actions"][:, :, :horizon].unsqueeze(4)).squeeze(4)
        q_tot = self.mixer(chosen, contexts[:, :, :horizon])  # [B, S, H, 1]
        with torch.no_grad():
            next_qs = _double_q(rollout["greedy_qs"], torch.stack(target_qs, dim=2),
                                rollout["avail"], self.args.double_q)
            next_q_tot = self._clip(self.target_mixer(next_qs, contexts[:, :, 1:]))
            continuations = rollout["continuations"]
            targets = rollout["rewards"] + self.args.gamma * continuations * next_q_tot
            reach = torch.cumprod(torch.cat([torch.ones_like(continuations[:, :, :1]),
                                             continuations[:, :, :-1]], dim=2), dim=2)
            weights = reach * start_mask.unsqueeze(2)
        count = (start_mask.sum() * horizon).clamp_min(1)
        return (weights * (q_tot - targets).pow(2)).sum() / count

    def _agent_inputs(self, obs, last_actions_onehot):
        """The MAC's input row (obs, last action, agent id) built from decoded tensors [N, n, .]."""
        parts = [obs]
        if self.args.obs_last_action:
            parts.append(last_actions_onehot)
        if self.args.obs_agent_id:
            parts.append(self.agent_ids.expand(obs.shape[0], -1, -1))
        return torch.cat(parts, dim=-1).reshape(obs.shape[0] * self.n_agents, -1)

    def _policy_actions(self, qs, avail):
        """Greedy actions under the mask [N, n] (epsilon-random among available with img_epsilon)."""
        greedy = qs.masked_fill(avail == 0, UNAVAILABLE_Q).argmax(dim=-1)
        epsilon = self.args.img_epsilon
        if epsilon <= 0:
            return greedy
        # rows with nothing available (padding) draw from all actions; they are masked later
        weights = torch.where(avail.sum(-1, keepdim=True) > 0, avail, torch.ones_like(avail))
        random_actions = torch.multinomial(weights.reshape(-1, avail.shape[-1]), 1).view_as(greedy)
        explore = torch.rand(greedy.shape, device=qs.device) < epsilon
        return torch.where(explore, random_actions, greedy)

    def _clip(self, values):
        """TD7: bootstrapped values clipped to the range of the targets seen so far."""
        low, high = self.target_range
        if not self.args.value_clip or low > high:
            return values
        return values.clamp(low, high)

    def _track_target_range(self, targets, mask):
        valid = targets.detach()[mask > 0]
        if valid.numel():
            self.target_range = [min(self.target_range[0], valid.min().item()),
                                 max(self.target_range[1], valid.max().item())]

    def _refresh_targets(self):
        """Target agents and mixer by target_update_interval_or_tau; then TD7's fixed encoders
        (every sale_refresh_interval updates), the target agents taking the live agents' copies."""
        self.last_target_update_step = update_targets(
            [(self.target_mac, self.mac), (self.target_mixer, self.mixer)],
            self.args.target_update_interval_or_tau, self.training_steps,
            self.last_target_update_step)
        if self.agent_has_sale:
            if self.training_steps % self.args.sale_refresh_interval == 0:
                self.mac.agent.refresh_fixed_encoders()
            self.target_mac.agent.copy_fixed_encoders(self.mac.agent)

    # --- devices and checkpoints ----------------------------------------------------------------
    def _world_model_parts(self):
        """What world_model.th holds: the modules of this run that exist."""
        parts = {"world_model": self.world_model, "rollout_encoder": self.rollout_encoder,
                 "joint_sale": self.joint_sale}
        return {name: module for name, module in parts.items() if module is not None}

    def cuda(self):
        self.to("cuda")

    def to(self, device):
        self.mac.to(device)
        self.target_mac.to(device)
        for module in (self.mixer, self.target_mixer, *self._world_model_parts().values()):
            module.to(device)
        self.agent_ids = self.agent_ids.to(device)
        self.rew_ms.mean, self.rew_ms.var = self.rew_ms.mean.to(device), self.rew_ms.var.to(device)
        return self

    def save_models(self, path):
        """agent.th (live, fixed and fixed-target encoders inside), target_agent.th, mixer.th,
        target_mixer.th, world_model.th (world model, rollout encoder, joint SALE), opt.th,
        wm_opt.th and learner_state.th (counters, reward statistics, target range)."""
        self.mac.save_models(path)
        torch.save(self.target_mac.state_dict(), os.path.join(path, "target_agent.th"))
        torch.save(self.mixer.state_dict(), os.path.join(path, "mixer.th"))
        torch.save(self.target_mixer.state_dict(), os.path.join(path, "target_mixer.th"))
        torch.save({name: module.state_dict() for name, module in self._world_model_parts().items()},
                   os.path.join(path, "world_model.th"))
        torch.save(self.optimiser.state_dict(), os.path.join(path, "opt.th"))
        if self.wm_optimiser is not None:
            torch.save(self.wm_optimiser.state_dict(), os.path.join(path, "wm_opt.th"))
        torch.save({"training_steps": self.training_steps,
                    "last_target_update_step": self.last_target_update_step,
                    "log_stats_t": self.log_stats_t, "rew_ms": self.rew_ms.state_dict(),
                    "target_range": list(self.target_range)},
                   os.path.join(path, "learner_state.th"))

    def load_models(self, path):
        self.mac.load_models(path)
        self.target_mac.load_state_dict(_load(path, "target_agent.th"))
        self.mixer.load_state_dict(_load(path, "mixer.th"))
        self.target_mixer.load_state_dict(_load(path, "target_mixer.th"))
        models = _load(path, "world_model.th")
        for name, module in self._world_model_parts().items():
            module.load_state_dict(models[name])
        self.optimiser.load_state_dict(_load(path, "opt.th"))
        if self.wm_optimiser is not None:
            self.wm_optimiser.load_state_dict(_load(path, "wm_opt.th"))
        state = _load(path, "learner_state.th")
        self.training_steps = state["training_steps"]
        self.last_target_update_step = state["last_target_update_step"]
        self.log_stats_t = state["log_stats_t"]
        self.rew_ms.load_state_dict(state["rew_ms"])
        self.target_range = list(state["target_range"])


def _forward_episodes(mac, batch):
    """(Q [B, T+1, n, A], hidden [B, T+1, n, H]) over whole episodes. Our controllers do it in one
    sequence pass; an EPyMARL controller steps through time."""
    if hasattr(mac, "forward_all"):
        return mac.forward_all(batch, return_hidden=True)
    mac.init_hidden(batch.batch_size)
    outs, hiddens = [], []
    for t in range(batch.max_seq_length):
        outs.append(mac.forward(batch, t=t))
        hiddens.append(mac.hidden_states.view(batch.batch_size, mac.n_agents, -1))
    return torch.stack(outs, dim=1), torch.stack(hiddens, dim=1)


def _take(x, slots):
    """x [B, T, ...] at the slots [B, S] (all of x when slots is None)."""
    if slots is None:
        return x
    index = slots.view(*slots.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, index)


def _take_all(tensors, slots):
    """_take of every tensor of a dict (None entries stay None)."""
    return {key: None if value is None else _take(value, slots) for key, value in tensors.items()}


def _double_q(live_next_qs, target_next_qs, avail, double_q):
    """Target agents' values of the next greedy actions (picked by the live agents with double Q)."""
    unavailable = avail == 0
    if double_q:
        greedy = live_next_qs.detach().masked_fill(unavailable, UNAVAILABLE_Q).argmax(-1, keepdim=True)
        return torch.gather(target_next_qs, -1, greedy).squeeze(-1)
    return target_next_qs.masked_fill(unavailable, UNAVAILABLE_Q).max(dim=-1)[0]


def _size(shape):
    return shape if isinstance(shape, int) else math.prod(shape)


def _load(path, name):
    file = os.path.join(path, name)
    if not os.path.exists(file):
        raise FileNotFoundError(f"checkpoint {path} has no {name}: not a sale_mb_learner checkpoint?")
    return torch.load(file, map_location="cpu")
