"""Maths shared by the learners: n-step and TD(lambda) returns, masked errors. One-step TD
targets, TD(lambda) over continuation factors, masks, masked means and target-network updates live
in ``utils/td_utils.py`` (the SALE-MB plugin ships that file) and are re-exported here.

Time runs along dim 1 of every [B, T, ...] tensor. ``next_values[:, t]`` is the value of the
state reached after step t (so ``next_values[:, -1]`` bootstraps the last step);
``terminated[:, t]`` is 1 when step t ended the episode in a real terminal (a time-out is not
terminal and bootstraps).
Masks are 0/1 with step t valid where ``mask[:, t] == 1``; they broadcast against the data.
"""
import torch

from utils.td_utils import (build_td_targets, hard_update, lambda_returns, masked_mean,  # noqa: F401
                            soft_update, update_targets, valid_step_mask)


def build_n_step_returns(rewards, terminated, next_values, gamma, n, mask=None):
    """n-step returns sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n}), stopping early at a terminal
    (no bootstrap) or at the end of the valid data (bootstrap from the last valid step's
    ``next_values``)."""
    steps = rewards.shape[1]
    valid = torch.ones_like(rewards) if mask is None else mask.expand_as(rewards).to(rewards.dtype)
    continues = gamma * (1 - terminated)
    returns = torch.zeros_like(rewards)
    weight = torch.ones_like(rewards)  # gamma^k * prod_{j<k} (1 - d_{t+j}) for rows still running
    for k in range(n):
        span = steps - k  # rows t with t + k still inside the sequence
        if span <= 0:
            break
        weight = weight[:, :span] * valid[:, k:]
        returns[:, :span] += weight * rewards[:, k:]
        next_valid = torch.zeros_like(weight)
        if k < n - 1:
            next_valid[:, :span - 1] = valid[:, k + 1:]
        weight = weight * continues[:, k:]
        returns[:, :span] += weight * (1 - next_valid) * next_values[:, k:]
        weight = weight * next_valid
    return returns


def build_lambda_returns(rewards, terminated, next_values, gamma, lam, mask=None):
    """TD(lambda) returns G_t = r_t + gamma (1 - d_t) ((1 - lam) V(s_{t+1}) + lam G_{t+1}), with
    G_{t+1} replaced by V(s_{t+1}) past the last (valid) step (``td_utils.lambda_returns``)."""
    return lambda_returns(rewards, 1 - terminated, next_values, gamma, lam, mask)


def build_gae_advantages(rewards, terminated, values, next_values, gamma, lam, mask=None):
    """GAE(lambda) advantages A_t = sum_k (gamma lam)^k delta_{t+k}, with
    delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t), cut at a terminal (no bootstrap) and
    at the end of the valid data (bootstrap from that step's ``next_values``). Equal to the
    lambda-return minus V(s_t), which is how it is computed. values, next_values: like rewards."""
    return build_lambda_returns(rewards, terminated, next_values, gamma, lam, mask) - values


# --- policy-gradient objectives ------------------------------------------------------------------
def clipped_surrogate(ratio, advantages, eps_clip):
    """PPO's clipped surrogate min(r A, clip(r, 1 - eps, 1 + eps) A), elementwise (to maximise).
    Its gradient in r is A inside the clip range and 0 where clipping binds the minimum."""
    clipped = ratio.clamp(1.0 - eps_clip, 1.0 + eps_clip)
    return torch.minimum(ratio * advantages, clipped * advantages)


def value_loss(values, returns, old_values=None, value_clip=None):
    """Elementwise squared error (V - G)^2; with ``value_clip`` PPO's clipped form
    max((V - G)^2, (V_old + clip(V - V_old, -c, c) - G)^2), which stops a value update from
    moving V more than c away from the values the data was collected with."""
    loss = (values - returns).pow(2)
    if value_clip is None:
        return loss
    clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
    return torch.maximum(loss, (clipped - returns).pow(2))


def masked_mse(prediction, target, mask):
    """Mean squared error over the valid entries."""
    return masked_mean((prediction - target) ** 2, mask)
