"""Maths shared by model-based learners: AvgL1Norm and Gaussian KL divergences.

Gaussians are given by mean and log standard deviation; every KL is returned per element (the
caller sums over feature dimensions and averages over valid entries).
"""
import torch


def avg_l1_norm(x, eps=1e-8):
    """TD7's AvgL1Norm: divide each vector (last dim) by its mean absolute value."""
    return x / x.abs().mean(dim=-1, keepdim=True).clamp_min(eps)


def gaussian_kl(q_mean, q_log_std, p_mean, p_log_std):
    """KL(q || p) of diagonal Gaussians, per element."""
    q_var, p_var = torch.exp(2 * q_log_std), torch.exp(2 * p_log_std)
    return p_log_std - q_log_std + (q_var + (q_mean - p_mean) ** 2) / (2 * p_var) - 0.5


def standard_normal_kl(mean, log_std):
    """KL(N(mean, std) || N(0, I)), per element."""
    return 0.5 * (mean ** 2 + torch.exp(2 * log_std) - 1) - log_std


def balanced_kl(posterior, prior, alpha):
    """DreamerV2's KL balancing, per element: alpha * KL(sg q || p) + (1 - alpha) * KL(q || sg p).

    Its value equals KL(q || p); of the gradient, a share alpha trains the prior and 1 - alpha the
    posterior. ``alpha=None`` gives the plain KL(q || p) (both get the whole gradient), which has
    the gradient of alpha = 0.5 at twice the weight. ``posterior``/``prior`` are (mean, log_std).
    """
    if alpha is None:
        return gaussian_kl(*posterior, *prior)
    q_mean, q_log_std = posterior
    p_mean, p_log_std = prior
    train_prior = gaussian_kl(q_mean.detach(), q_log_std.detach(), p_mean, p_log_std)
    train_posterior = gaussian_kl(q_mean, q_log_std, p_mean.detach(), p_log_std.detach())
    return alpha * train_prior + (1 - alpha) * train_posterior
