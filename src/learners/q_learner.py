"""Value-decomposition Q-learning: IQL (no mixer), VDN and QMIX.

Each agent's Q-network is trained on 1-step (double) Q-learning targets; with a mixer the
agents' chosen Q-values are first mixed into Q_tot(s, u) and the TD error is taken on the joint
value: loss = mean over valid steps of (Q_tot(s_t, u_t) - (r_t + gamma (1 - d_t) Q'_tot(s_{t+1},
u'_{t+1})))^2, where u' is the greedy action of the live network (double Q) or of the target one.
"""
import copy
import os

import torch

from modules.mixers import REGISTRY as mixer_REGISTRY
from utils.running_mean_std import RunningMeanStd
from utils.td_utils import (build_td_targets, greedy_next_qs, load_file, masked_mean,
                            update_targets, valid_step_mask)


class QLearner:
    def __init__(self, mac, scheme, logger, args):
        self.args = args
        self.mac = mac
        self.logger = logger
        self.n_agents = args.n_agents
        self.common_reward = args.common_reward

        self.mixer = None
        self.params = list(mac.parameters())
        if args.mixer is not None:
            if not self.common_reward:
                raise ValueError(f"mixer {args.mixer!r} mixes agents into one team value and needs "
                                 "a common reward: set common_reward=True, or mixer=None for IQL "
                                 "with one reward per agent")
            if args.mixer not in mixer_REGISTRY:
                raise ValueError(f"unknown mixer {args.mixer!r}; known: {sorted(mixer_REGISTRY)}")
            self.mixer = mixer_REGISTRY[args.mixer](args)
            self.params += list(self.mixer.parameters())
        # fused: one kernel for all parameters (about 5x faster than the per-parameter loop)
        self.optimiser = torch.optim.Adam(self.params, lr=args.lr, fused=True)

        self.target_mac = copy.deepcopy(mac)
        self.target_mixer = copy.deepcopy(self.mixer)

        self.training_steps = 0
        self.last_target_update_step = 0
        self.log_stats_t = -args.learner_log_interval - 1

        # running statistics for standardise_rewards / standardise_returns: per agent where each
        # agent has its own reward / its own target
        reward_shape = (1,) if self.common_reward else (self.n_agents,)
        return_shape = (1,) if self.mixer is not None else (self.n_agents,)
        self.rew_ms = RunningMeanStd(shape=reward_shape, device=args.device)
        self.ret_ms = RunningMeanStd(shape=return_shape, device=args.device)

    def train(self, batch, t_env, episode_num):
        max_t = batch.max_t_filled()
        if max_t < batch.max_seq_length:
            batch = batch[:, :max_t]
        rewards = batch["reward"][:, :-1]
        actions = batch["actions"][:, :-1]
        terminated = batch["terminated"][:, :-1].float()
        mask = valid_step_mask(batch["filled"], terminated)
        if self.args.standardise_rewards:
            rewards = self.rew_ms.standardise(rewards, mask)

        # --- Q(s_t, u_t) of the actions taken -------------------------------------------------
        agent_qs = self.mac.forward_all(batch)  # [B, T+1, n_agents, n_actions]
        chosen_qs = torch.gather(agent_qs[:, :-1], dim=3, index=actions).squeeze(3)
        if self.mixer is not None:
            chosen_qs = self.mixer(chosen_qs, batch["state"][:, :-1])

        # --- targets r_t + gamma (1 - d_t) Q'(s_{t+1}, greedy u) ------------------------------
        with torch.no_grad():
            next_qs = self._greedy_target_qs(batch, agent_qs.detach()[:, 1:])
            if self.args.standardise_returns:
                next_qs = next_qs * torch.sqrt(self.ret_ms.var) + self.ret_ms.mean
            targets = build_td_targets(rewards, terminated, next_qs, self.args.gamma)
            if self.args.standardise_returns:
                targets = self.ret_ms.standardise(targets, mask)

        # --- masked TD loss and one optimiser step ---------------------------------------------
        td_error = chosen_qs - targets
        loss = masked_mean(td_error.pow(2), mask)

        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.args.grad_norm_clip)
        self.optimiser.step()

        self.training_steps += 1
        self.last_target_update_step = update_targets(
            self._target_pairs(), self.args.target_update_interval_or_tau,
            self.training_steps, self.last_target_update_step)

        if t_env - self.log_stats_t >= self.args.learner_log_interval:
            # EPyMARL's definitions (q_taken_mean and target_mean divide by n_agents even for a
            # mixed Q_tot), so curves compare with its runs.
            self.logger.log_stat("loss", loss.item(), t_env)
            self.logger.log_stat("grad_norm", grad_norm.item(), t_env)
            self.logger.log_stat("td_error_abs", masked_mean(td_error.abs(), mask).item(), t_env)
            self.logger.log_stat("q_taken_mean",
                                 masked_mean(chosen_qs, mask).item() / self.n_agents, t_env)
            self.logger.log_stat("target_mean",
                                 masked_mean(targets, mask).item() / self.n_agents, t_env)
            self.log_stats_t = t_env

    def _greedy_target_qs(self, batch, next_agent_qs):
        """Target network's value of the greedy next actions, mixed when there is a mixer. With
        double Q the live network picks the actions (next_agent_qs), else the target one."""
        target_agent_qs = self.target_mac.forward_all(batch)[:, 1:]
        next_qs = greedy_next_qs(next_agent_qs, target_agent_qs, batch["avail_actions"][:, 1:],
                                 self.args.double_q)
        if self.mixer is not None:
            next_qs = self.target_mixer(next_qs, batch["state"][:, 1:])
        return next_qs

    def _target_pairs(self):
        pairs = [(self.target_mac, self.mac)]
        if self.mixer is not None:
            pairs.append((self.target_mixer, self.mixer))
        return pairs

    def cuda(self):
        self.to("cuda")

    def to(self, device):
        for target, live in self._target_pairs():
            target.to(device)
            live.to(device)
        for stats in (self.rew_ms, self.ret_ms):
            stats.to(device)
        return self

    # --- checkpoints -----------------------------------------------------------------------------
    def save_models(self, path):
        """EPyMARL's files (agent.th, mixer.th, opt.th) plus the target networks and counters
        (target_agent.th, target_mixer.th, learner_state.th) for an exact resume."""
        self.mac.save_models(path)
        torch.save(self.optimiser.state_dict(), os.path.join(path, "opt.th"))
        torch.save(self.target_mac.state_dict(), os.path.join(path, "target_agent.th"))
        if self.mixer is not None:
            torch.save(self.mixer.state_dict(), os.path.join(path, "mixer.th"))
            torch.save(self.target_mixer.state_dict(), os.path.join(path, "target_mixer.th"))
        torch.save(self._learner_state(), os.path.join(path, "learner_state.th"))

    def load_models(self, path):
        """Load a checkpoint; files a plain EPyMARL checkpoint lacks are optional (targets then
        copy the live networks, counters keep their values)."""
        load_file(path, "agent.th")  # a damaged file is named before the MAC reads it
        self.mac.load_models(path)
        if self.mixer is not None:
            self.mixer.load_state_dict(load_file(path, "mixer.th"))
        self.optimiser.load_state_dict(load_file(path, "opt.th"))

        target_agent = load_file(path, "target_agent.th", required=False)
        if target_agent is None:
            self.target_mac.load_state(self.mac)
        else:
            self.target_mac.load_state_dict(target_agent)
        if self.mixer is not None:
            target_mixer = load_file(path, "target_mixer.th", required=False)
            self.target_mixer.load_state_dict(self.mixer.state_dict() if target_mixer is None
                                              else target_mixer)
        state = load_file(path, "learner_state.th", required=False)
        if state is not None:
            self._load_learner_state(state)

    def _learner_state(self):
        return {"training_steps": self.training_steps,
                "last_target_update_step": self.last_target_update_step,
                "log_stats_t": self.log_stats_t,
                "rew_ms": self.rew_ms.state_dict(),
                "ret_ms": self.ret_ms.state_dict()}

    def _load_learner_state(self, state):
        self.training_steps = state["training_steps"]
        self.last_target_update_step = state["last_target_update_step"]
        self.log_stats_t = state["log_stats_t"]
        self.rew_ms.load_state_dict(state["rew_ms"])
        self.ret_ms.load_state_dict(state["ret_ms"])

