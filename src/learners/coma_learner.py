"""COMA (Foerster et al., 2018): a centralised critic Q(s, u) and, for each agent, the
counterfactual advantage A_i = Q(s, u) - sum_a pi_i(a | tau_i) Q(s, (u_-i, a)).

Per update, on the episodes just collected:
  critic  minimise E[(Q(s_t, u_t) - G_t)^2], G_t the n-step return (``q_nstep``) bootstrapped
          from the target critic's Q of the actions taken;
  policy  maximise E[A_i log pi_i(u_i | tau_i) + entropy_coef H(pi_i)] with the critic's Q before
          its step;
  target  hard copy every ``target_update_interval_or_tau`` updates (or soft with tau <= 1).
Discrete actions only. Counters, checkpoints and reward standardisation are the actor-critic
learner's.
"""
import torch

from components.policy_distributions import CategoricalPolicy
from learners.actor_critic_learner import ActorCriticLearner, _step
from utils.rl_utils import build_n_step_returns
from utils.td_utils import masked_mean, update_targets


class COMALearner(ActorCriticLearner):
    supports_continuous_actions = False

    @staticmethod
    def check_config(config):
        ActorCriticLearner.check_config(config)
        if config["standardise_returns"]:
            raise ValueError("coma_learner does not standardise returns: set standardise_returns=False.")
        if not config["critic_type"].startswith("coma_critic"):
            raise ValueError(f"coma_learner needs a counterfactual critic (coma_critic or "
                             f"coma_critic_ns), not critic_type={config['critic_type']!r}.")

    def train(self, batch, t_env, episode_num):
        batch, data = self._prepare(batch)
        mask, actions = data["mask"], data["actions"]

        # --- critic: Q of the actions taken against n-step targets --------------------------------
        with torch.no_grad():
            target_qs = self.target_critic(batch).gather(-1, batch["actions"]).squeeze(-1)
            returns = build_n_step_returns(data["rewards"], data["terminated"], target_qs[:, 1:],
                                           self.args.gamma, self.args.q_nstep, mask)
        qs = self.critic(batch)[:, :-1]  # [B, T, n, n_actions]
        q_taken = qs.gather(-1, actions).squeeze(-1)
        critic_loss = masked_mean((q_taken - returns).pow(2), mask)

        # --- policy: counterfactual advantage --------------------------------------------------
        pi = self.mac.forward_all(batch)[:, :-1]
        qs = qs.detach()
        advantages = q_taken.detach() - (pi.detach() * qs).sum(-1)
        log_probs = CategoricalPolicy.log_prob(pi, actions, data["avail"])
        entropy = CategoricalPolicy.entropy(pi, data["avail"])
        pg_loss = -masked_mean(advantages * log_probs + self.args.entropy_coef * entropy, mask)

        # --- optimiser steps and target critic ---------------------------------------------------
        critic_grad_norm = _step(self.critic_optimiser, critic_loss, self.critic_params,
                                 self.args.grad_norm_clip)
        agent_grad_norm = _step(self.agent_optimiser, pg_loss, self.agent_params, self.args.grad_norm_clip)
        self.training_steps += 1
        self.last_target_update_step = update_targets(
            [(self.target_critic, self.critic)], self.args.target_update_interval_or_tau,
            self.training_steps, self.last_target_update_step)

        if t_env - self.log_stats_t >= self.args.learner_log_interval:
            stats = {"pg_loss": pg_loss, "critic_loss": critic_loss, "agent_grad_norm": agent_grad_norm,
                     "critic_grad_norm": critic_grad_norm, "entropy": masked_mean(entropy, mask),
                     "advantage_mean": masked_mean(advantages, mask),
                     "td_error_abs": masked_mean((returns - q_taken).abs(), mask),
                     "q_taken_mean": masked_mean(q_taken, mask), "target_mean": masked_mean(returns, mask)}
            for key, value in stats.items():
                self.logger.log_stat(key, value.item(), t_env)
            self.log_stats_t = t_env
