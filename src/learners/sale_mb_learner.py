"""SALE-MB: model-based value decomposition with state-action learned embeddings.

One update on a batch of real episodes (slots t = 0..T, transitions t = 0..T-1):
1. the agents (and the target agents) over the episodes: Q_i for every action, recurrent states h;
2. model step (``SALEModelLearner.update``): posterior q(z_i^t | o_i^t, h_i^{t-1}) with h from the
   target agents, the ELBO terms with KL balancing, the joint SALE loss and each agent's SALE loss;
3. context: imagination (no gradient) from every slot with the live world model and the agents'
   greedy policy, read by the rollout encoder into foresight m; c^t = [s^t, F(Z^t), m^t];
4. real TD on every step: Q_tot = qmix_sale(Q_i(a_i^t), c^t), double-Q targets from the target
   networks reading c^{t+1} (detached), optionally clipped to the range of targets seen so far
   (TD7);
5. imagined TD (Dyna-style) on the imagined transitions from every slot or from
   ``imagination_starts`` sampled ones (the agents re-run those with gradient), each weighted by
   the product of the earlier predicted continuations, the mixer reading [s_hat, F(Z_hat), m_hat];
6. one backward pass; one Adam step per parameter group (see ``_parameter_groups``);
7. target networks and TD7's fixed encoders refresh (by default together, as in TD7).
Issue 9's keys: ``model_update_interval`` (steps 2 and 5 every k-th update only),
``reward_head_target`` (what the reward head fits), ``reward_trunk`` (the reward head's own
MLP or the transition's trunk), ``clamp_imagined_rewards`` (step 5's rewards
kept in the batch's real range), ``target_context`` (target copies of the model part build
c^{t+1}), ``imagined_td_gate`` (step 5's weight gated by the model's error),
``imagined_td_lambda`` (step 5's targets: one step, value expansion, or TD(lambda) between).
The learner builds its own mixer and model part (EPyMARL has no registry for either) and uses
only EPyMARL's MAC interface (``forward``, ``init_hidden``, ``hidden_states``, ``parameters``,
``agent``, ``cuda``, ``load_state``, ``save_models``, ``load_models``; a MAC with
``forward_all`` runs whole episodes faster), so it also runs inside an EPyMARL checkout.
"""
import copy
import math
import os
from types import SimpleNamespace

import torch

from learners.sale_model_learner import REWARD_HEAD_TARGETS, SALEModelLearner, imagined_steps
from modules.mixers.qmix_sale import QMixSALE, check_mixer_inputs
from utils.running_mean_std import RunningMeanStd
from utils.td_utils import (build_td_targets, greedy_actions, greedy_next_qs, lambda_returns, load_file,
                            masked_mean, update_targets, valid_step_mask)


class SALEMBLearner:
    def __init__(self, mac, scheme, logger, args):
        self.check_config(vars(args))
        self.args, self.mac, self.logger = args, mac, logger
        self.n_agents, self.n_actions = args.n_agents, args.n_actions
        self.mixer = QMixSALE(args)
        self.model = SALEModelLearner(mac, scheme, args)
        self.optimisers = self._parameter_groups()

        self.target_mac = copy.deepcopy(mac)
        if hasattr(mac.agent, "read_target_encoder"):
            self.target_mac.agent.read_target_encoder = True
        self.target_mixer = copy.deepcopy(self.mixer)
        # target_context: target copies of the world model, joint SALE and rollout encoder
        self.target_model = copy.deepcopy(self.model) if args.target_context else None

        self.training_steps = 0
        self.last_target_update_step = 0
        self.log_stats_t = -args.learner_log_interval - 1
        self.rew_ms = RunningMeanStd(shape=(1,), device=args.device)
        self.target_range = [math.inf, -math.inf]  # min and max of the real TD targets so far

    def _parameter_groups(self):
        """Which loss trains which network. TD (real and imagined): the agents' GRU and Q heads,
        the mixer, the rollout encoder. Model losses: the agents' live SALE encoders, the world
        model, the joint SALE. Each group has its own Adam and clip (``separate_wm_optimiser``;
        False: one Adam at ``lr`` and one clip over both)."""
        args, agent = self.args, self.mac.agent
        agent_td = list(agent.q_parameters()) if hasattr(agent, "q_parameters") else list(self.mac.parameters())
        self.td_params = agent_td + list(self.mixer.parameters()) + self.model.td_parameters()
        self.model_params = self.model.model_parameters(agent)
        if not args.separate_wm_optimiser:
            return [ClippedAdam(self.td_params + self.model_params, args.lr, args.grad_norm_clip)]
        groups = [ClippedAdam(self.td_params, args.lr, args.grad_norm_clip)]
        if self.model_params:
            groups.append(ClippedAdam(self.model_params, args.wm_lr, args.model_grad_clip))
        return groups

    @staticmethod
    def check_config(config):
        """Refuse inconsistent settings before anything is built (also called at start-up)."""
        if not config["common_reward"]:
            raise ValueError("sale_mb_learner mixes agents into one team value and needs "
                             "common_reward=True")
        if config.get("mixer") != "qmix_sale":
            raise ValueError(f"sale_mb_learner mixes with its context mixer: set mixer=qmix_sale "
                             f"(got mixer={config.get('mixer')!r}); pick the context with mixer_inputs")
        if config["agent"] == "sale_agent" and not config.get("use_rnn", True):
            raise ValueError("agent=sale_agent always has a GRU core: use_rnn=False is not "
                             "supported (use agent=rnn for a feed-forward agent)")
        if config.get("obs_individual_obs"):
            raise ValueError("sale_mb_learner has no centralised critic and does not read "
                             "obs_individual_obs: set obs_individual_obs=False")
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
        if config["sale_refresh_interval"] is None and config["target_update_interval_or_tau"] <= 1:
            raise ValueError("sale_refresh_interval=null refreshes the SALE encoders with the hard "
                             "target copy, but target_update_interval_or_tau <= 1 is a soft update: "
                             "set an integer sale_refresh_interval (TD7: 250)")
        if config["reward_head_target"] not in REWARD_HEAD_TARGETS:
            raise ValueError(f"reward_head_target must be one of {list(REWARD_HEAD_TARGETS)}, got "
                             f"{config['reward_head_target']!r}")
        if config["reward_trunk"] not in ("shared", "own"):
            raise ValueError(f"reward_trunk must be 'shared' or 'own', got {config['reward_trunk']!r}")
        if config["reward_scale_floor"] <= 0:
            raise ValueError(f"reward_scale_floor must be > 0, got {config['reward_scale_floor']}")
        if not isinstance(config["model_update_interval"], int) or config["model_update_interval"] < 1:
            raise ValueError(f"model_update_interval must be an integer >= 1 (1: every update), "
                             f"got {config['model_update_interval']!r}")
        gate = config["imagined_td_gate"]
        if gate is not None and gate <= 0:
            raise ValueError(f"imagined_td_gate must be > 0 nats (or null: no gate), got {gate}")
        if not 0 <= config["imagined_td_lambda"] <= 1:
            raise ValueError(f"imagined_td_lambda must be in [0, 1] (0: one-step imagined targets, 1: "
                             f"value expansion to the rollout's end), got {config['imagined_td_lambda']}")
        if config["rollout_depth"] < 1:
            raise ValueError(f"rollout_depth must be >= 1, got {config['rollout_depth']}")
        kl_balance = config["kl_balance"]
        if kl_balance is not None and not 0 <= kl_balance <= 1:
            raise ValueError(f"kl_balance must be in [0, 1] (or null for a plain KL), got {kl_balance}")

    # =============================================================================================
    def train(self, batch, t_env, episode_num):
        args = self.args
        batch, e = self._episodes(batch)

        # ====== agents over the real episodes ======
        agent_qs, hidden = forward_episodes(self.mac, batch)
        # double Q reads the target agents' Qs at the live greedy actions only (all of them when
        # the target context imagines with the target agents)
        greedy = (greedy_actions(agent_qs, e.avail) if args.double_q and self.target_model is None
                  else None)
        with torch.no_grad():
            target_qs, target_hidden = forward_episodes(self.target_mac, batch, greedy)

        # ====== model step: world model, joint SALE, agents' SALE (every k-th update) ======
        train_model = self.training_steps % args.model_update_interval == 0
        model_loss, stats, latents, sale = self.model.update(e, self.mac.agent, target_hidden,
                                                             train_model)

        # ====== context c^t = [s^t, F(Z^t), m^t] (imagination from every slot) ======
        foresight, rollout = None, None
        if train_model or "foresight" in args.mixer_inputs:
            foresight, rollout = self.model.imagine(self.mac, latents, agent_qs, hidden, e.avail,
                                                    self.training_steps)
        context = self.mixer.context(state=e.state, sale=sale, foresight=foresight)

        # ====== real TD on every step ======
        chosen_qs = torch.gather(agent_qs[:, :-1], 3, e.actions).squeeze(3)
        q_tot = self.mixer(chosen_qs, context[:, :-1])
        with torch.no_grad():
            next_qs = (target_qs[:, 1:].squeeze(-1) if greedy is not None else
                       greedy_next_qs(agent_qs[:, 1:], target_qs[:, 1:], e.avail[:, 1:], args.double_q))
            next_context = (context[:, 1:].detach() if self.target_model is None
                            else self._target_context(e, target_qs, target_hidden)[:, 1:])
            next_q_tot = self._clip(self.target_mixer(next_qs, next_context))
            targets = build_td_targets(e.rewards, e.terminated, next_q_tot, args.gamma)
        td_error = q_tot - targets
        stats["td_loss"] = masked_mean(td_error.pow(2), e.step_mask)
        td_loss = stats["td_loss"]

        # ====== imagined TD from all slots, or `imagination_starts` sampled ones ======
        if rollout is not None and train_model and args.imagined_td_weight > 0:
            starts = self._sample_starts(e.start_mask)
            stats["imagined_td_loss"] = self._imagined_td_loss(
                _take_all(rollout, starts), _take(agent_qs, starts), _take(hidden, starts),
                _take(target_hidden, starts), _take(context, starts), _take(e.start_mask, starts),
                self._real_reward_range(e))
            stats["imagined_td_weight"] = self._imagined_td_weight(stats)
            td_loss = td_loss + stats["imagined_td_weight"] * stats["imagined_td_loss"]

        # ====== optimiser steps: one backward, one Adam step per parameter group ======
        for optimiser in self.optimisers:
            optimiser.zero_grad()
        (td_loss + model_loss).backward()
        grad_norms = [optimiser.clip() for optimiser in self.optimisers]
        for optimiser in self.optimisers:
            optimiser.step()
        self._track_target_range(targets, e.step_mask)

        # ====== target networks and fixed encoders ======
        self.training_steps += 1
        self.last_target_update_step = update_targets(
            [(self.target_mac.agent, self.mac.agent), (self.target_mixer, self.mixer),
             *self._target_model_pairs()],
            args.target_update_interval_or_tau, self.training_steps, self.last_target_update_step)
        self.model.refresh_encoders(self.mac.agent, self.target_mac.agent, self._encoder_refresh_due())

        # logged from a model update (the first one due), so every term is there on every log
        if train_model and t_env - self.log_stats_t >= args.learner_log_interval:
            stats.update(loss=td_loss + model_loss, grad_norm=grad_norms[0],
                         wm_grad_norm=grad_norms[-1],
                         td_error_abs=masked_mean(td_error.abs(), e.step_mask),
                         q_taken_mean=masked_mean(q_tot, e.step_mask) / self.n_agents,
                         target_mean=masked_mean(targets, e.step_mask) / self.n_agents)
            stats.update(self.model.diagnostics(e, latents, sale, rollout))
            for key, value in stats.items():
                self.logger.log_stat(key, value.item() if torch.is_tensor(value) else value, t_env)
            self.log_stats_t = t_env

    # =============================================================================================
    def _episodes(self, batch):
        """The batch cut to its filled length, and its tensors: obs [B, T+1, n, o], state
        [B, T+1, S], actions [B, T, n, 1], actions_onehot, avail (float) [B, T+1, n, A],
        terminated, rewards (standardised with ``standardise_rewards``) [B, T, 1], masks of the
        transitions (step_mask [B, T, 1]), of the slots (slot_mask [B, T+1, 1]) and of the slots
        imagination starts from (start_mask: filled, no terminal before)."""
        max_t = batch.max_t_filled()
        if max_t < batch.max_seq_length:
            batch = batch[:, :max_t]
        terminated = batch["terminated"][:, :-1].float()
        step_mask = valid_step_mask(batch["filled"], terminated)
        slot_mask = batch["filled"].float()
        ended_before = torch.cat([torch.zeros_like(terminated[:, :1]),
                                  terminated.cumsum(dim=1).clamp_max(1)], dim=1)
        raw_rewards = batch["reward"][:, :-1]
        rewards = raw_rewards
        if self.args.standardise_rewards:
            rewards = self.rew_ms.standardise(raw_rewards, step_mask)
        return batch, SimpleNamespace(
            obs=batch["obs"].flatten(3), state=batch["state"].flatten(2),
            actions=batch["actions"][:, :-1], actions_onehot=batch["actions_onehot"],
            avail=batch["avail_actions"].float(), terminated=terminated, rewards=rewards,
            model_rewards=self.model.reward_targets(raw_rewards, rewards, step_mask),
            step_mask=step_mask, slot_mask=slot_mask, start_mask=slot_mask * (1 - ended_before))

    def _sample_starts(self, start_mask):
        """Slots [B, k] that imagined TD starts from: ``imagination_starts`` = k valid slots per
        episode drawn without replacement (None: every slot)."""
        starts = self.args.imagination_starts
        if starts is None or starts >= start_mask.shape[1]:
            return None
        weights = start_mask.squeeze(-1) + 1e-6  # invalid slots only when too few are valid
        return torch.multinomial(weights, starts)

    def _real_reward_range(self, e):
        """(lowest, highest) reward TD learns from in this batch's valid steps, with
        ``clamp_imagined_rewards``; else None."""
        if not self.args.clamp_imagined_rewards:
            return None
        valid = e.rewards[e.step_mask > 0]
        return (valid.min(), valid.max()) if valid.numel() else None

    def _imagined_td_loss(self, rollout, agent_qs, hidden, target_hidden, context, start_mask,
                          reward_range=None):
        """TD on imagined transitions k = 0..H-1 from the given slots [B, S]; step k weighs
        prod_{j<k} c_hat_j, its target the TD(``imagined_td_lambda``) return over the rest of the
        rollout (0: one step). Step 0 acts from the real slot (real Q, real context); the agents
        re-run the imagined steps with gradient from their real h^t, the target agents from
        theirs, both through their MACs. Imagined rewards (in TD's units) are clamped to
        ``reward_range`` when given."""
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
        with torch.no_grad():  # the last step (imagination left it out): greedy Qs and ŝ
            last_qs = self.mac.forward(steps, t=horizon).view(agent_qs.shape)
            greedy_qs = _append_step(rollout["greedy_qs"], last_qs)
            states = _append_step(rollout["states"], self.model.decode_state(rollout["latents"][:, :, -1]))

        imagined_context = self.mixer.context(state=states,
                                              sale=self.model.embed_sale(rollout["latents"]),
                                              foresight=rollout["foresight"][:, :, 1:])
        contexts = torch.cat([context.unsqueeze(2), imagined_context], dim=2)  # [B, S, H+1, C]

        chosen = torch.gather(torch.stack(live_qs, dim=2), 4,
                              rollout["actions"].unsqueeze(4)).squeeze(4)
        q_tot = self.mixer(chosen, contexts[:, :, :horizon])  # [B, S, H, 1]
        with torch.no_grad():
            next_qs = greedy_next_qs(greedy_qs, torch.stack(target_qs, dim=2),
                                     rollout["avail"], self.args.double_q)
            next_q_tot = self._clip(self.target_mixer(next_qs, contexts[:, :, 1:]))
            continuations = rollout["continuations"]
            rewards = self.model.td_rewards(rollout["rewards"], self._td_reward_units)
            if reward_range is not None:
                rewards = rewards.clamp(*reward_range)
            flat = (batch_size * slots, horizon, 1)  # TD(lambda) along the imagined steps
            targets = lambda_returns(rewards.reshape(flat), continuations.reshape(flat),
                                     next_q_tot.reshape(flat), self.args.gamma,
                                     self.args.imagined_td_lambda).view(q_tot.shape)
            reach = torch.cumprod(torch.cat([torch.ones_like(continuations[:, :, :1]),
                                             continuations[:, :, :-1]], dim=2), dim=2)
            weights = reach * start_mask.unsqueeze(2)
        count = (start_mask.sum() * horizon).clamp_min(1)
        return (weights * (q_tot - targets).pow(2)).sum() / count

    @torch.no_grad()
    def _target_context(self, e, target_qs, target_hidden):
        """c' [B, T+1, C] from target networks only (``target_context``): the target world
        model's posterior means Z', F'(Z') and the foresight of an imagination by the target world
        model and target agents read by the target rollout encoder, so the TD targets move only
        when the targets refresh."""
        model = self.target_model
        latents = model.posterior_means(e.obs, target_hidden)
        sale = model.embed_sale(latents if latents is not None else e.state)
        foresight = None
        if "foresight" in self.args.mixer_inputs:
            foresight, _ = model.imagine(self.target_mac, latents, target_qs, target_hidden,
                                         e.avail, self.training_steps)
        return self.target_mixer.context(state=e.state, sale=sale, foresight=foresight)

    def _target_model_pairs(self):
        """(target, live) pairs of the model parts the target context reads (none without
        ``target_context``)."""
        if self.target_model is None:
            return []
        targets = self.target_model.parts()
        return [(targets[name], module) for name, module in self.model.parts().items()]

    def _td_reward_units(self, raw):
        """Env rewards [...] in the units TD learns from (standardised by the running statistics,
        not updated, with ``standardise_rewards``)."""
        if not self.args.standardise_rewards:
            return raw
        return (raw - self.rew_ms.mean) / torch.sqrt(self.rew_ms.var)

    def _imagined_td_weight(self, stats):
        """lambda_img, or with ``imagined_td_gate`` = g nats lambda_img * exp(-KL / g), KL the
        world model's one-step latent error on this batch (its KL term, no gradient)."""
        gate = self.args.imagined_td_gate
        if gate is None:
            return self.args.imagined_td_weight
        return self.args.imagined_td_weight * torch.exp(-stats["wm_kl_loss"].detach() / gate)

    def _encoder_refresh_due(self):
        """Whether TD7's fixed encoders refresh after this update: every ``sale_refresh_interval``
        updates, or (null) together with the hard target copy, as TD7 does, so the target Q head
        always reads the encoder generation it was trained with."""
        interval = self.args.sale_refresh_interval
        if interval is None:
            return self.last_target_update_step == self.training_steps
        return self.training_steps % interval == 0

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

    # --- devices and checkpoints ----------------------------------------------------------------
    def cuda(self):
        """EPyMARL's call: the MACs by their own ``cuda()``, everything else here."""
        self.mac.cuda()
        self.target_mac.cuda()
        target_parts = self.target_model.parts().values() if self.target_model is not None else ()
        for module in (self.mixer, self.target_mixer, *self.model.parts().values(), *target_parts):
            module.cuda()
        self.rew_ms.to("cuda")

    def save_models(self, path):
        """agent.th (live, fixed and fixed-target encoders inside), target_agent.th, mixer.th,
        target_mixer.th, world_model.th (world model, rollout encoder, joint SALE; with
        ``target_context`` also their target copies), opt.th,
        wm_opt.th and learner_state.th (counters, reward statistics, target range)."""
        self.mac.save_models(path)
        torch.save(self.target_mac.agent.state_dict(), os.path.join(path, "target_agent.th"))
        torch.save(self.mixer.state_dict(), os.path.join(path, "mixer.th"))
        torch.save(self.target_mixer.state_dict(), os.path.join(path, "target_mixer.th"))
        torch.save({name: module.state_dict() for name, module in self._model_parts().items()},
                   os.path.join(path, "world_model.th"))
        for optimiser, name in zip(self.optimisers, OPTIMISER_FILES):
            torch.save(optimiser.state_dict(), os.path.join(path, name))
        torch.save({"training_steps": self.training_steps,
                    "last_target_update_step": self.last_target_update_step,
                    "log_stats_t": self.log_stats_t, "rew_ms": self.rew_ms.state_dict(),
                    "target_range": list(self.target_range),
                    "reward_scale": None if self.model.reward_scale is None
                    else self.model.reward_scale.state_dict()},
                   os.path.join(path, "learner_state.th"))

    def _model_parts(self):
        """The model part's modules by name, with their target copies as target_<name>."""
        parts = dict(self.model.parts())
        if self.target_model is not None:
            parts.update({f"target_{name}": module for name, module in self.target_model.parts().items()})
        return parts

    def load_models(self, path):
        load_file(path, "agent.th")  # a damaged file is named before the MAC reads it
        self.mac.load_models(path)
        self.target_mac.agent.load_state_dict(load_file(path, "target_agent.th"))
        self.mixer.load_state_dict(load_file(path, "mixer.th"))
        self.target_mixer.load_state_dict(load_file(path, "target_mixer.th"))
        models = load_file(path, "world_model.th")
        for name, module in self._model_parts().items():
            module.load_state_dict(models[name])
        for optimiser, name in zip(self.optimisers, OPTIMISER_FILES):
            optimiser.load_state_dict(load_file(path, name))
        state = load_file(path, "learner_state.th")
        self.training_steps = state["training_steps"]
        self.last_target_update_step = state["last_target_update_step"]
        self.log_stats_t = state["log_stats_t"]
        self.rew_ms.load_state_dict(state["rew_ms"])
        self.target_range = list(state["target_range"])
        if self.model.reward_scale is not None:
            self.model.reward_scale.load_state_dict(state["reward_scale"])


OPTIMISER_FILES = ("opt.th", "wm_opt.th")  # the TD group's Adam, the model group's


class ClippedAdam:
    """Adam over one parameter group whose gradient norm is clipped before each step."""

    def __init__(self, params, lr, clip):
        self.params, self.clip_norm = params, clip
        # foreach: the per-parameter loop's arithmetic in fewer calls (bitwise the same, see
        # tests/test_sale_mb_previous_path.py); fused=True would change the rounding
        self.adam = torch.optim.Adam(params, lr=lr, foreach=True)

    def zero_grad(self):
        self.adam.zero_grad(set_to_none=True)

    def clip(self):
        """Clip the group's gradients; returns their norm before clipping."""
        return torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)

    def step(self):
        self.adam.step()

    def state_dict(self):
        return self.adam.state_dict()

    def load_state_dict(self, state):
        self.adam.load_state_dict(state)


def forward_episodes(mac, batch, actions=None):
    """(Q [B, T+1, n, A], hidden [B, T+1, n, H]) over whole episodes: in one sequence pass with a
    MAC that has ``forward_all`` (ours), else step by step through EPyMARL's interface. With
    action indices [B, T+1, n, k], the Q-values of those actions only, [B, T+1, n, k] (computed
    for them alone when the agent ``takes_actions``)."""
    if hasattr(mac, "forward_all"):
        if actions is not None and getattr(mac.agent, "takes_actions", False):
            return mac.forward_all(batch, return_hidden=True, actions=actions)
        qs, hidden = mac.forward_all(batch, return_hidden=True)
    else:
        mac.init_hidden(batch.batch_size)
        outs, hiddens = [], []
        for t in range(batch.max_seq_length):
            outs.append(mac.forward(batch, t=t))
            hiddens.append(mac.hidden_states.view(batch.batch_size, mac.n_agents, -1))
        qs, hidden = torch.stack(outs, dim=1), torch.stack(hiddens, dim=1)
    return (qs if actions is None else torch.gather(qs, -1, actions)), hidden


def _take(x, slots):
    """x [B, T, ...] at the slots [B, S] (all of x when slots is None)."""
    if slots is None:
        return x
    index = slots.view(*slots.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, index)


def _take_all(tensors, slots):
    """_take of every tensor of a dict (None entries stay None)."""
    return {key: None if value is None else _take(value, slots) for key, value in tensors.items()}


def _append_step(steps, last):
    """steps [B, S, K, ...] (or None when K = 0) followed by last [B, S, ...]; None stays None."""
    if last is None:
        return None
    return last.unsqueeze(2) if steps is None else torch.cat([steps, last.unsqueeze(2)], dim=2)
