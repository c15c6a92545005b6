"""One learner for the A2C and PPO families: IA2C, MAA2C (``epochs: 1``) and IPPO, MAPPO.

Per update, on the episodes just collected (on-policy: ``buffer_size == batch_size``):
  1. targets   G_t = n-step return (``q_nstep``, EPyMARL's) or, with ``gae_lambda``, the
               lambda-return, bootstrapped from the target critic; advantages A_t = G_t - V(s_t)
               (GAE(lambda) in the second case), optionally normalised per batch;
  2. for ``epochs`` passes over ``minibatches`` random splits of the episodes:
     policy    maximise E[min(r A, clip(r, 1 - eps, 1 + eps) A) + entropy_coef H(pi)],
               r = pi(u|tau) / pi_old(u|tau) (one epoch: r = 1, the A2C gradient A grad log pi);
     critic    minimise E[(V - G)^2] (``value_loss_clip``: PPO's clipped value loss);
  3. target critic: soft (tau) or hard update (``target_update_interval_or_tau``).
The critic is picked by ``critic_type`` (modules/critics); policies over discrete actions are
masked softmaxes, over continuous actions Gaussians (components/policy_distributions.py).
``standardise_returns`` is value normalisation: the critic predicts returns standardised by
running statistics. Differs from EPyMARL's PPO in one respect: advantages are computed once per
update, not again after each epoch's critic step.
"""
import copy
import os

import torch

from components.policy_distributions import CategoricalPolicy, GaussianPolicy
from modules.critics import REGISTRY as critic_REGISTRY
from utils.rl_utils import build_gae_advantages, build_n_step_returns, clipped_surrogate, value_loss
from utils.running_mean_std import RunningMeanStd
from utils.td_utils import load_file, masked_mean, update_targets, valid_step_mask


class ActorCriticLearner:
    supports_continuous_actions = True

    def __init__(self, mac, scheme, logger, args):
        self.args = args
        self.mac = mac
        self.logger = logger
        self.n_agents = args.n_agents
        self.policy = GaussianPolicy if args.continuous_actions else CategoricalPolicy
        self.critic = critic_REGISTRY[args.critic_type](scheme, args)
        self.target_critic = copy.deepcopy(self.critic)
        self.agent_params = list(mac.parameters())
        self.critic_params = list(self.critic.parameters())
        self.agent_optimiser = torch.optim.Adam(self.agent_params, lr=args.lr)
        self.critic_optimiser = torch.optim.Adam(self.critic_params, lr=args.lr)

        self.training_steps = 0
        self.last_target_update_step = 0
        self.log_stats_t = -args.learner_log_interval - 1
        reward_shape = (1,) if args.common_reward else (self.n_agents,)
        self.rew_ms = RunningMeanStd(shape=reward_shape, device=args.device)
        self.ret_ms = RunningMeanStd(shape=(self.n_agents,), device=args.device)

    @staticmethod
    def check_config(config):
        """Refuse settings that would fail late or train something else than intended."""
        if config["critic_type"] not in critic_REGISTRY:
            raise ValueError(f"critic_type={config['critic_type']!r} is not registered; choose one of "
                             f"{', '.join(sorted(critic_REGISTRY))}.")
        if config["buffer_size"] != config["batch_size"]:
            raise ValueError(
                f"{config['learner']} learns on-policy from the episodes just collected: set "
                f"buffer_size equal to batch_size (now {config['buffer_size']} and "
                f"{config['batch_size']}; EPyMARL uses 10 and 10).")
        if config["minibatches"] > config["batch_size"]:
            raise ValueError(f"minibatches={config['minibatches']} splits batch_size="
                             f"{config['batch_size']} episodes: use at most one minibatch per episode.")
        # their ranges (and those of epochs, minibatches, q_nstep) are declared in default.yaml
        for key, meaning in (("gae_lambda", "n-step returns"), ("value_loss_clip", "no clipping")):
            value = config[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{key} must be null ({meaning}) or a number, got {value!r}.")

    # --- one update ------------------------------------------------------------------------------
    def train(self, batch, t_env, episode_num):
        batch, data = self._prepare(batch)
        with torch.no_grad():
            old_log_probs = self.policy.log_prob(self.mac.forward_all(batch)[:, :-1],
                                                 data["actions"], data["avail"])
            advantages, critic_targets, old_values = self._advantages(batch, data)

        stats = []
        for _ in range(self.args.epochs):
            for episodes in torch.randperm(batch.batch_size).chunk(self.args.minibatches):
                stats.append(self._update(batch[episodes], {k: v[episodes] for k, v in data.items()},
                                          old_log_probs[episodes], advantages[episodes],
                                          critic_targets[episodes], old_values[episodes]))

        self.training_steps += 1
        self.last_target_update_step = update_targets(
            [(self.target_critic, self.critic)], self.args.target_update_interval_or_tau,
            self.training_steps, self.last_target_update_step)

        if t_env - self.log_stats_t >= self.args.learner_log_interval:
            mask = data["mask"]
            means = {key: sum(s[key] for s in stats) / len(stats) for key in stats[0]}
            means.update(advantage_mean=masked_mean(advantages, mask).item(),
                         target_mean=masked_mean(critic_targets, mask).item())
            for key, value in means.items():
                self.logger.log_stat(key, value, t_env)
            self.log_stats_t = t_env

    def _prepare(self, batch):
        """Cut the padding; the tensors of the T transitions, rewards per agent [B, T, n]
        (standardised with ``standardise_rewards``) and the mask [B, T, n]."""
        max_t = batch.max_t_filled()
        if max_t < batch.max_seq_length:
            batch = batch[:, :max_t]
        terminated = batch["terminated"][:, :-1].float()
        mask = valid_step_mask(batch["filled"], terminated)
        rewards = batch["reward"][:, :-1]
        if self.args.standardise_rewards:
            rewards = self.rew_ms.standardise(rewards, mask)
        return batch, {"rewards": rewards.expand(-1, -1, self.n_agents), "terminated": terminated,
                       "mask": mask.expand(-1, -1, self.n_agents), "actions": batch["actions"][:, :-1],
                       "avail": batch["avail_actions"][:, :-1].float()}

    def _advantages(self, batch, data):
        """Advantages, critic targets (standardised with ``standardise_returns``) and the
        critic's current values in its own scale, all [B, T, n]."""
        values = self.critic(batch).squeeze(-1)
        next_values = self.target_critic(batch).squeeze(-1)[:, 1:]
        critic_values = values[:, :-1]
        if self.args.standardise_returns:
            values = self._denormalise(values)
            next_values = self._denormalise(next_values)
        values = values[:, :-1]
        rewards, terminated, mask = data["rewards"], data["terminated"], data["mask"]
        if self.args.gae_lambda is None:
            returns = build_n_step_returns(rewards, terminated, next_values, self.args.gamma,
                                           self.args.q_nstep, mask)
            advantages = returns - values
        else:
            advantages = build_gae_advantages(rewards, terminated, values, next_values,
                                              self.args.gamma, self.args.gae_lambda, mask)
            returns = advantages + values
        if self.args.standardise_returns:
            returns = self.ret_ms.standardise(returns, mask[..., :1])  # per-agent statistics
        if self.args.normalise_advantages:
            mean = masked_mean(advantages, mask)
            std = masked_mean((advantages - mean).pow(2), mask).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)
        return advantages, returns, critic_values

    def _denormalise(self, values):
        return values * torch.sqrt(self.ret_ms.var) + self.ret_ms.mean

    def _update(self, batch, data, old_log_probs, advantages, critic_targets, old_values):
        """One gradient step of the policy and one of the critic on a minibatch of episodes."""
        mask = data["mask"]
        # --- policy: clipped surrogate plus entropy bonus ----------------------------------------
        outputs = self.mac.forward_all(batch)[:, :-1]
        log_probs = self.policy.log_prob(outputs, data["actions"], data["avail"])
        entropy = self.policy.entropy(outputs, data["avail"])
        log_ratio = (log_probs - old_log_probs) * mask  # padding: ratio 1, no overflow into the means
        ratio = torch.exp(log_ratio)
        surrogate = clipped_surrogate(ratio, advantages, self.args.eps_clip)
        pg_loss = -masked_mean(surrogate + self.args.entropy_coef * entropy, mask)

        # --- critic: (clipped) squared error to the targets --------------------------------------
        values = self.critic(batch).squeeze(-1)[:, :-1]
        critic_loss = masked_mean(value_loss(values, critic_targets, old_values, self.args.value_loss_clip), mask)

        # --- optimiser steps ---------------------------------------------------------------------
        agent_grad_norm = _step(self.agent_optimiser, pg_loss, self.agent_params, self.args.grad_norm_clip)
        critic_grad_norm = _step(self.critic_optimiser, critic_loss, self.critic_params,
                                 self.args.grad_norm_clip)
        with torch.no_grad():
            clipped = ((ratio - 1.0).abs() > self.args.eps_clip).float()
            return {"pg_loss": pg_loss.item(), "critic_loss": critic_loss.item(),
                    "entropy": masked_mean(entropy, mask).item(),
                    "clip_fraction": masked_mean(clipped, mask).item(),
                    "approx_kl": masked_mean(ratio - 1.0 - log_ratio, mask).item(),
                    "agent_grad_norm": agent_grad_norm.item(), "critic_grad_norm": critic_grad_norm.item(),
                    "td_error_abs": masked_mean((critic_targets - values).abs(), mask).item(),
                    "q_taken_mean": masked_mean(values, mask).item()}

    # --- devices and checkpoints -----------------------------------------------------------------
    def cuda(self):
        self.to("cuda")

    def to(self, device):
        self.mac.to(device)
        self.critic.to(device)
        self.target_critic.to(device)
        for stats in (self.rew_ms, self.ret_ms):
            stats.to(device)
        return self

    def save_models(self, path):
        """EPyMARL's files (agent.th, critic.th, agent_opt.th, critic_opt.th) plus the target
        critic and counters (target_critic.th, learner_state.th) for an exact resume."""
        self.mac.save_models(path)
        torch.save(self.critic.state_dict(), os.path.join(path, "critic.th"))
        torch.save(self.target_critic.state_dict(), os.path.join(path, "target_critic.th"))
        torch.save(self.agent_optimiser.state_dict(), os.path.join(path, "agent_opt.th"))
        torch.save(self.critic_optimiser.state_dict(), os.path.join(path, "critic_opt.th"))
        torch.save({"training_steps": self.training_steps,
                    "last_target_update_step": self.last_target_update_step,
                    "log_stats_t": self.log_stats_t, "rew_ms": self.rew_ms.state_dict(),
                    "ret_ms": self.ret_ms.state_dict()}, os.path.join(path, "learner_state.th"))

    def load_models(self, path):
        """Load a checkpoint; a plain EPyMARL one lacks the target critic (then a copy of the
        critic) and the counters (kept)."""
        load_file(path, "agent.th")  # a damaged file is named before the MAC reads it
        self.mac.load_models(path)
        self.critic.load_state_dict(load_file(path, "critic.th"))
        target = load_file(path, "target_critic.th", required=False)
        self.target_critic.load_state_dict(self.critic.state_dict() if target is None else target)
        self.agent_optimiser.load_state_dict(load_file(path, "agent_opt.th"))
        self.critic_optimiser.load_state_dict(load_file(path, "critic_opt.th"))
        state = load_file(path, "learner_state.th", required=False)
        if state is not None:
            self.training_steps = state["training_steps"]
            self.last_target_update_step = state["last_target_update_step"]
            self.log_stats_t = state["log_stats_t"]
            self.rew_ms.load_state_dict(state["rew_ms"])
            self.ret_ms.load_state_dict(state["ret_ms"])


def _step(optimiser, loss, params, grad_norm_clip):
    """Backward, clip the gradient norm, step; returns the norm before clipping."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_norm_clip)
    optimiser.step()
    return grad_norm
