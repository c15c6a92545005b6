"""The action distributions of stochastic policies, as the actor-critic learners see them.

A controller's ``forward_all`` gives policy outputs [B, T, n_agents, k]; each distribution turns
them, with the actions taken and ``avail_actions`` [B, T, n_agents, n_actions], into per-agent
log-probabilities and entropies [B, T, n_agents]. Both classes share that small interface and a
learner picks one at construction from ``args.continuous_actions``.
"""
import math

import torch

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # keeps std in [0.007, 7.4]: no collapse, no blow-up


class CategoricalPolicy:
    """Outputs are probabilities over discrete actions (unavailable ones already masked to 0);
    actions are indices [B, T, n_agents, 1]."""

    @staticmethod
    def log_prob(outputs, actions, avail_actions):
        return _safe_log(outputs.gather(-1, actions.long()).squeeze(-1))

    @staticmethod
    def entropy(outputs, avail_actions):
        return -(outputs * _safe_log(outputs)).sum(-1)


def _safe_log(probs):
    """log p with p = 0 (a masked action) read as the smallest positive float: finite values and,
    unlike xlogy, a finite gradient at 0 (0 * log 0 has gradient log 0 = -inf otherwise)."""
    return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))


class GaussianPolicy:
    """Outputs are [mean, log_std] of a diagonal Gaussian over raw actions, 2 * n_actions values;
    actions are the raw samples [B, T, n_agents, n_actions]. The env clips a raw action to its
    bounds, so the log-probability of the stored raw sample is exact for the policy that acted
    (the clipped Gaussian's density over raw actions is the Gaussian's). Dimensions an agent does
    not have (``avail_actions`` 0, padding when agents differ in size) count for nothing."""

    @staticmethod
    def split(outputs):
        mean, log_std = outputs.chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @classmethod
    def log_prob(cls, outputs, actions, avail_actions):
        mean, log_std = cls.split(outputs)
        z = (actions - mean) * torch.exp(-log_std)
        per_dim = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        return (per_dim * avail_actions).sum(-1)

    @classmethod
    def entropy(cls, outputs, avail_actions):
        _, log_std = cls.split(outputs)
        per_dim = log_std + 0.5 * (1.0 + math.log(2 * math.pi))
        return (per_dim * avail_actions).sum(-1)

    @classmethod
    def sample(cls, outputs, avail_actions, greedy=False):
        """Raw actions [..., n_actions]: the mean when greedy, else a draw from torch's RNG;
        dimensions an agent does not have are 0."""
        mean, log_std = cls.split(outputs)
        actions = mean if greedy else mean + torch.exp(log_std) * torch.randn_like(mean)
        return actions * avail_actions
