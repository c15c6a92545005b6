"""Q-learning plumbing shared by the value-based learners (and shipped with the SALE-MB plugin,
which runs inside upstream EPyMARL too, so this file imports torch only).

Time runs along dim 1 of every [B, T, ...] tensor. ``next_values[:, t]`` is the value of the
state reached after step t; ``terminated[:, t]`` is 1 when step t ended the episode in a real
terminal (a time-out is not terminal and bootstraps). Masks are 0/1 and broadcast against the data.
"""
import math
import os

import torch

UNAVAILABLE_Q = -1e7  # finite, so padded steps (no action available) give no inf * 0 = nan


# --- sizes ---------------------------------------------------------------------------------------
def flat_size(shape):
    """Number of values of a shape given as an int or a tuple / list."""
    return int(math.prod(shape)) if isinstance(shape, (tuple, list)) else int(shape)


# --- TD targets ----------------------------------------------------------------------------------
def build_td_targets(rewards, terminated, target_qs, gamma):
    """One-step targets r_t + gamma * (1 - d_t) * Q'(s_{t+1})."""
    return rewards + gamma * (1 - terminated) * target_qs


def lambda_returns(rewards, continues, next_values, gamma, lam, mask=None):
    """TD(lambda) returns G_t = r_t + gamma c_t ((1 - lam) V(s_{t+1}) + lam G_{t+1}), with
    G_{t+1} replaced by V(s_{t+1}) past the last (valid) step; ``continues`` c_t is 1 - d_t, or a
    predicted probability of going on (imagined steps). lam = 0: one-step targets; lam = 1: the
    rewards to the end, then V (value expansion)."""
    valid = None if mask is None else mask.expand_as(rewards).to(rewards.dtype)
    returns = torch.empty_like(rewards)
    following = next_values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        if valid is not None and t + 1 < rewards.shape[1]:
            following = torch.lerp(next_values[:, t], following, valid[:, t + 1])
        blended = (1 - lam) * next_values[:, t] + lam * following
        following = rewards[:, t] + gamma * continues[:, t] * blended
        returns[:, t] = following
    return returns


def greedy_actions(qs, avail):
    """Indices [..., n, 1] of the greedy actions among the available ones (``avail`` [..., n, A],
    0 = unavailable)."""
    return qs.detach().masked_fill(avail == 0, UNAVAILABLE_Q).argmax(-1, keepdim=True)


def greedy_next_qs(live_next_qs, target_next_qs, avail, double_q):
    """Target agents' values [..., n] of the greedy next actions among the available ones
    (``avail`` [..., n, A], 0 = unavailable): picked by the live agents' Qs with double Q,
    else by the target agents' own."""
    if double_q:
        return torch.gather(target_next_qs, -1, greedy_actions(live_next_qs, avail)).squeeze(-1)
    return target_next_qs.masked_fill(avail == 0, UNAVAILABLE_Q).max(dim=-1)[0]


def valid_step_mask(filled, terminated):
    """Float [B, T, 1] mask of the transitions to learn from, given ``filled`` of all T + 1 slots
    and ``terminated`` of the T transitions: step t counts when slots t and t + 1 both hold data
    (an episode's last slot only holds its final observation) and no real terminal came before."""
    mask = filled[:, :-1].float() * filled[:, 1:].float()
    alive = torch.cat([torch.ones_like(mask[:, :1]), 1 - terminated[:, :-1].float()], dim=1)
    return mask * alive


def masked_mean(x, mask):
    """Mean of x over the entries where the (broadcast) mask is 1; 0 when nothing is valid."""
    mask = mask.to(x.dtype)
    count = mask.sum() * (x.numel() / mask.numel())
    return (x * mask).sum() / count.clamp_min(torch.finfo(x.dtype).tiny)


# --- reward transforms ---------------------------------------------------------------------------
def symlog(x):
    """sign(x) * log(1 + |x|): compresses large magnitudes, near identity around 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x):
    """The inverse of symlog."""
    return torch.sign(x) * torch.expm1(x.abs())


# --- target networks -----------------------------------------------------------------------------
def hard_update(target, source):
    """Copy every weight (and buffer) of source into target; both expose state_dict()."""
    target.load_state_dict(source.state_dict())


@torch.no_grad()
def soft_update(target, source, tau):
    """Polyak averaging target <- (1 - tau) * target + tau * source over parameters()."""
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.lerp_(param, tau)


def update_targets(pairs, interval_or_tau, step, last_update_step):
    """Apply ``target_update_interval_or_tau`` to (target, source) pairs of modules after a
    learner update.

    interval_or_tau > 1: hard copy once ``step - last_update_step`` reaches the interval (the
    learner picks the unit of ``step``: updates, or episodes for EPyMARL's MADDPG);
    <= 1: soft update with tau = interval_or_tau every call. Returns the new last_update_step.
    """
    if interval_or_tau > 1:
        if step - last_update_step >= interval_or_tau:
            for target, source in pairs:
                hard_update(target, source)
            return step
        return last_update_step
    for target, source in pairs:
        soft_update(target, source, interval_or_tau)
    return last_update_step


# --- checkpoint files ----------------------------------------------------------------------------
def load_file(path, name, required=True):
    """torch.load of ``path/name`` onto the CPU. A missing file is None when not ``required``;
    a missing required file or one torch cannot read stops with an error naming it."""
    file = os.path.join(path, name)
    if not os.path.exists(file):
        if not required:
            return None
        raise FileNotFoundError(f"checkpoint {path} has no {name}: is it a checkpoint of this "
                                "learner and algorithm?")
    try:
        return torch.load(file, map_location="cpu")
    except Exception as error:  # torch raises several types for a truncated or foreign file
        raise RuntimeError(f"checkpoint file {file} is damaged or not a torch file ({error}); "
                           "load an earlier checkpoint") from error
