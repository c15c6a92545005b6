"""VAE world model of a Dec-POMDP: two VAEs that roll latent trajectories forward (imagination).

Per agent i a latent z_i (``agent_latent_dim``); the joint latent is Z = concat(z_1..z_n).
- Posterior (observation VAE), shared by the agents: q(z_i^t | o_i^t, h_i^{t-1}, id_i), with h the
  agent's recurrent state (given detached), so the latent carries history. Decoders rebuild o_i^t
  and the available actions from z_i^t, and (the global-state module) s^t from Z^t.
- Prior (transition VAE): p(Z^{t+1} | Z^t, a^t) from an MLP of [Z^t, z_sa^t, E(a^t)], where z_sa
  is the joint SALE embedding (given detached; left out with ``use_sale: False``) and E embeds
  each agent's one-hot action. The same trunk predicts the team reward (or, with
  ``reward_trunk: own``, an MLP of its own over the same inputs) and the continuation (Bernoulli
  of not terminated; time-outs continue).
- KL balancing between q(Z^{t+1}) and p(Z^{t+1} | Z^t, a^t); a small KL of the prior to N(0, I).
Losses sum over feature dimensions and average over valid (batch, time, agent) entries.

``imagine`` rolls the prior's mean H steps from given latents, asking a policy callback for the
actions at every imagined step; ``RolloutEncoder`` turns a rollout into foresight vectors.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.latent_utils import balanced_kl, standard_normal_kl
from utils.td_utils import flat_size, masked_mean

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def _mlp(in_dim, hidden_dim, out_dim):
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ELU(), nn.Linear(hidden_dim, out_dim))


def _gaussian(raw):
    """Split [..., 2k] into a mean and a log std squashed smoothly into [LOG_STD_MIN, LOG_STD_MAX]."""
    mean, raw_log_std = raw.chunk(2, dim=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw_log_std) + 1)
    return mean, log_std


def usable_actions(avail_logits):
    """Predicted availability (probability > 0.5) as 0/1; a row with none available gets its most
    likely action."""
    avail = (avail_logits > 0).float()
    empty = avail.sum(dim=-1, keepdim=True) == 0
    most_likely = F.one_hot(avail_logits.argmax(dim=-1), avail_logits.shape[-1]).float()
    return torch.where(empty, most_likely, avail)


class VAEWorldModel(nn.Module):
    def __init__(self, scheme, args):
        super().__init__()
        self.obs_dim = flat_size(scheme["obs"]["vshape"])
        self.state_dim = flat_size(args.state_shape)
        self.n_agents, self.n_actions = args.n_agents, args.n_actions
        self.latent_dim = args.agent_latent_dim
        self.joint_latent_dim = self.n_agents * self.latent_dim
        self.use_sale = args.use_sale
        self.args = args
        width = args.world_model_dim
        ids = self.n_agents

        self.posterior = _mlp(self.obs_dim + args.hidden_dim + ids, width, 2 * self.latent_dim)
        self.obs_decoder = _mlp(self.latent_dim + ids, width, self.obs_dim)
        self.avail_decoder = _mlp(self.latent_dim + ids, width, self.n_actions)
        self.action_embed = nn.Linear(self.n_actions, args.action_embed_dim, bias=False)
        transition_in = (self.joint_latent_dim + self.n_agents * args.action_embed_dim
                         + (args.sale_dim if self.use_sale else 0))
        self.transition = nn.Sequential(nn.Linear(transition_in, width), nn.ELU(),
                                        nn.Linear(width, width), nn.ELU())
        self.prior_head = nn.Linear(width, 2 * self.joint_latent_dim)
        # reward_trunk "own": the reward from an MLP of its own over the transition's inputs, so
        # the reward loss (which jumps when the first rewards arrive) does not move the trunk the
        # prior and the continuation read
        self.own_reward_trunk = args.reward_trunk == "own"
        self.reward_head = _mlp(transition_in, width, 1) if self.own_reward_trunk else nn.Linear(width, 1)
        self.continuation_head = nn.Linear(width, 1)
        self.state_decoder = (_mlp(self.joint_latent_dim, width, self.state_dim)
                              if args.use_state_decoder else None)
        self.register_buffer("agent_ids", torch.eye(self.n_agents), persistent=False)

    # --- pieces ----------------------------------------------------------------------------------
    def _with_ids(self, x):
        """Append the agent id one-hot to [..., n_agents, k]."""
        return torch.cat([x, self.agent_ids.expand(*x.shape[:-2], -1, -1)], dim=-1)

    def observe(self, obs, prev_hidden):
        """Posterior q(z_i | o_i, h_i^{t-1}): (mean, log_std), each [..., n_agents, latent]."""
        return _gaussian(self.posterior(self._with_ids(torch.cat([obs, prev_hidden], dim=-1))))

    def decode_obs(self, z):
        """[..., n_agents, latent] -> observations [..., n_agents, obs_dim]."""
        return self.obs_decoder(self._with_ids(z))

    def avail_logits(self, z):
        return self.avail_decoder(self._with_ids(z))

    def decode_state(self, joint_latent):
        return self.state_decoder(joint_latent)

    def step(self, joint_latent, actions_onehot, sale_embedding=None):
        """The transition from (Z^t, a^t): prior (mean, log_std) of Z^{t+1} [..., n*latent],
        reward [..., 1] and continuation logit [..., 1]."""
        parts = [joint_latent, self.action_embed(actions_onehot).flatten(-2)]
        if self.use_sale:
            parts.append(sale_embedding.detach())
        inputs = torch.cat(parts, dim=-1)
        trunk = self.transition(inputs)
        prior = _gaussian(self.prior_head(trunk))
        reward = self.reward_head(inputs if self.own_reward_trunk else trunk)
        return prior, reward, self.continuation_head(trunk)

    # --- training --------------------------------------------------------------------------------
    def loss(self, posterior, actions_onehot, avail_actions, obs, state, rewards, terminated,
             slot_mask, step_mask, sale_embedding=None):
        """The world-model loss on real episodes. Slots are [B, T+1, ...], transitions [B, T, ...];
        ``sale_embedding`` is z_sa of the taken actions at the first T slots. Returns the total
        and a dict of its terms (unweighted)."""
        args = self.args
        mean, log_std = posterior
        z = mean + torch.exp(log_std) * torch.randn_like(mean)  # [B, T+1, n, latent]
        joint = z.flatten(-2)
        agent_slot_mask = slot_mask.unsqueeze(-1)  # [B, T+1, 1, 1] against [B, T+1, n, k]

        terms = {
            "wm_recon_loss": masked_mean((self.decode_obs(z) - obs).pow(2).sum(-1, keepdim=True),
                                         agent_slot_mask),
            "wm_avail_loss": masked_mean(F.binary_cross_entropy_with_logits(
                self.avail_logits(z), avail_actions, reduction="none").sum(-1, keepdim=True),
                agent_slot_mask),
        }
        if self.state_decoder is not None:
            terms["wm_state_loss"] = masked_mean(
                (self.decode_state(joint) - state).pow(2).sum(-1, keepdim=True), slot_mask)

        prior, reward, continuation_logit = self.step(joint[:, :-1], actions_onehot[:, :-1],
                                                      sale_embedding)
        next_posterior = (mean[:, 1:].flatten(-2), log_std[:, 1:].flatten(-2))
        kl = balanced_kl(next_posterior, prior, args.kl_balance)
        kl = kl.view(*kl.shape[:-1], self.n_agents, self.latent_dim).sum(-1, keepdim=True)
        if args.kl_free_nats > 0:
            kl = kl.clamp_min(args.kl_free_nats)
        agent_step_mask = step_mask.unsqueeze(-1)
        terms["wm_kl_loss"] = masked_mean(kl, agent_step_mask)
        prior_kl = standard_normal_kl(*prior)
        prior_kl = prior_kl.view(*prior_kl.shape[:-1], self.n_agents, self.latent_dim).sum(-1, keepdim=True)
        terms["wm_prior_kl_loss"] = masked_mean(prior_kl, agent_step_mask)
        terms["wm_reward_loss"] = masked_mean((reward - rewards).pow(2), step_mask)
        terms["wm_continuation_loss"] = masked_mean(F.binary_cross_entropy_with_logits(
            continuation_logit, 1 - terminated, reduction="none"), step_mask)

        total = (args.recon_loss_weight * terms["wm_recon_loss"]
                 + args.avail_loss_weight * terms["wm_avail_loss"]
                 + args.kl_weight * terms["wm_kl_loss"]
                 + args.kl_prior_weight * terms["wm_prior_kl_loss"]
                 + args.reward_loss_weight * terms["wm_reward_loss"]
                 + args.continuation_loss_weight * terms["wm_continuation_loss"])
        if self.state_decoder is not None:
            total = total + args.state_loss_weight * terms["wm_state_loss"]
        return total, terms

    # --- imagination -----------------------------------------------------------------------------
    @torch.no_grad()
    def imagine_step(self, joint_latent, actions_onehot, joint_sale=None, noise=0.0):
        """One imagined step from Z [N, n*latent] with the actions' one-hots [N, n, n_actions]:
        the prior's mean (plus ``noise`` times its std) as the next latent, and what it decodes.
        Returns a dict of detached tensors: ``latent`` [N, n*latent], ``reward`` and
        ``continuation`` (probability) [N, 1] of the transition, ``obs`` [N, n, obs_dim],
        ``avail`` (predicted, 0/1) [N, n, n_actions] (the state: ``decode_state``)."""
        sale = None
        if self.use_sale:
            sale = joint_sale.embed_action(joint_sale.embed(joint_latent), actions_onehot.flatten(-2))
        (mean, log_std), reward, continuation_logit = self.step(joint_latent, actions_onehot, sale)
        latent = mean + noise * torch.exp(log_std) * torch.randn_like(mean) if noise else mean
        z = latent.view(-1, self.n_agents, self.latent_dim)
        return {"latent": latent, "reward": reward,
                "continuation": torch.sigmoid(continuation_logit),
                "avail": usable_actions(self.avail_logits(z)), "obs": self.decode_obs(z)}

    @torch.no_grad()
    def prediction_errors(self, joint_mean, actions_onehot, state, rewards, step_mask, horizon,
                          joint_sale=None):
        """Open-loop errors of the prior's mean against the posterior means along real episodes,
        after 1 and after H steps (real actions): latent MSE, state error norm, reward error."""
        errors = {}
        steps = actions_onehot.shape[1] - 1
        for depth in sorted({1, horizon}):
            if depth > steps:
                continue
            starts = steps - depth + 1
            latent = joint_mean[:, :starts]
            valid = torch.ones_like(step_mask[:, :starts])
            for k in range(depth):
                onehot = actions_onehot[:, k:k + starts]
                sale = None
                if self.use_sale:
                    sale = joint_sale.embed_action(joint_sale.embed(latent), onehot.flatten(-2))
                (latent, _), reward, _ = self.step(latent, onehot, sale)
                valid = valid * step_mask[:, k:k + starts]
            target = joint_mean[:, depth:depth + starts]
            errors[f"wm_latent_error_{depth}step"] = masked_mean(
                (latent - target).pow(2).sum(-1, keepdim=True), valid).item()
            errors[f"wm_reward_error_{depth}step"] = masked_mean(
                (reward - rewards[:, depth - 1:depth - 1 + starts]).abs(), valid).item()
            if self.state_decoder is not None:
                errors[f"wm_state_error_{depth}step"] = masked_mean(
                    (self.decode_state(latent) - state[:, depth:depth + starts]).norm(dim=-1, keepdim=True),
                    valid).item()
        return errors

