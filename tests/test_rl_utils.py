"""Returns, advantages and policy-gradient objectives against values computed by hand.

One episode batch [B=1, T=4] with gamma = 0.5, rewards 1, 2, 3, 4, V(s_0..s_3) = 5, 10, 20, 30 and
V(s_1..s_4) = 10, 20, 30, 40 (``next_values``). Three endings: the data runs on to the end of the
batch (bootstrapped), a real terminal at t = 1 (not bootstrapped) with padding after it, and a
time-out at t = 1 (bootstrapped from V(s_2)) with padding after it. The padded steps hold junk
(99) that must not leak into the valid ones.
"""
import pytest
import torch

from utils.rl_utils import (build_gae_advantages, build_lambda_returns, build_n_step_returns,
                            clipped_surrogate, lambda_returns, valid_step_mask, value_loss)

GAMMA = 0.5


def episode(ending):
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).unsqueeze(-1)
    values = torch.tensor([[5.0, 10.0, 20.0, 30.0]]).unsqueeze(-1)
    next_values = torch.tensor([[10.0, 20.0, 30.0, 40.0]]).unsqueeze(-1)
    terminated = torch.zeros_like(rewards)
    filled = torch.ones(1, 5, 1)
    if ending != "runs_on":
        rewards[:, 2:] = values[:, 2:] = next_values[:, 2:] = 99.0
        filled[:, 3:] = 0  # the final observation sits in slot 2
        if ending == "terminal":
            terminated[:, 1] = 1
    mask = valid_step_mask(filled, terminated)
    return rewards, terminated, values, next_values, mask


def valid(x, mask):
    return x[mask > 0].tolist()


def test_valid_step_mask_keeps_the_steps_up_to_the_end():
    assert episode("runs_on")[-1].flatten().tolist() == [1, 1, 1, 1]
    assert episode("terminal")[-1].flatten().tolist() == [1, 1, 0, 0]
    assert episode("time_out")[-1].flatten().tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("ending, expected", [
    ("runs_on", [1 + 0.5 * 2 + 0.25 * 20, 2 + 0.5 * 3 + 0.25 * 30, 3 + 0.5 * 4 + 0.25 * 40, 4 + 0.5 * 40]),
    ("terminal", [1 + 0.5 * 2, 2]),
    ("time_out", [1 + 0.5 * 2 + 0.25 * 20, 2 + 0.5 * 20]),
])
def test_two_step_returns(ending, expected):
    rewards, terminated, _, next_values, mask = episode(ending)
    returns = build_n_step_returns(rewards, terminated, next_values, GAMMA, 2, mask)
    assert valid(returns, mask) == pytest.approx(expected)


def test_one_step_returns_are_td_targets_and_long_n_reaches_the_end():
    rewards, terminated, _, next_values, mask = episode("runs_on")
    one = build_n_step_returns(rewards, terminated, next_values, GAMMA, 1, mask)
    assert valid(one, mask) == pytest.approx([6, 12, 18, 24])
    long = build_n_step_returns(rewards, terminated, next_values, GAMMA, 10, mask)
    assert valid(long, mask)[0] == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4 + 0.0625 * 40)


# G_t = r_t + gamma ((1 - lam) V(s_{t+1}) + lam G_{t+1}), lam = 0.5, by hand from the end
RUNS_ON_LAMBDA = [6.28125, 11.125, 16.5, 24.0]   # 4 + .5*40; 3 + .5*(.5*30 + .5*24); ...


@pytest.mark.parametrize("ending, expected", [
    ("runs_on", RUNS_ON_LAMBDA),
    ("terminal", [1 + 0.5 * (0.5 * 10 + 0.5 * 2), 2]),
    ("time_out", [1 + 0.5 * (0.5 * 10 + 0.5 * 12), 2 + 0.5 * 20]),
])
def test_lambda_returns(ending, expected):
    rewards, terminated, _, next_values, mask = episode(ending)
    returns = build_lambda_returns(rewards, terminated, next_values, GAMMA, 0.5, mask)
    assert valid(returns, mask) == pytest.approx(expected)


def test_lambda_returns_over_predicted_continuations():
    """Imagined steps (SALE-MB's imagined TD): continuations are predicted probabilities, not
    1 - d. lam = 1 is value expansion: r_0 + g c_0 r_1 + g^2 c_0 c_1 r_2 + g^3 c_0 c_1 c_2 V_3;
    lam = 0 is the one-step target, bitwise, whatever the later steps hold."""
    rewards = torch.tensor([[1.0, 2.0, 3.0]]).unsqueeze(-1)
    continues = torch.tensor([[0.5, 1.0, 0.25]]).unsqueeze(-1)
    next_values = torch.tensor([[10.0, 20.0, 40.0]]).unsqueeze(-1)
    expansion = lambda_returns(rewards, continues, next_values, GAMMA, 1.0)
    g = GAMMA
    assert expansion[0, :, 0].tolist() == pytest.approx([
        1 + g * 0.5 * (2 + g * 1.0 * (3 + g * 0.25 * 40)), 2 + g * 1.0 * (3 + g * 0.25 * 40), 3 + g * 0.25 * 40])
    one_step = lambda_returns(rewards, continues, next_values, GAMMA, 0.0)
    assert torch.equal(one_step, rewards + GAMMA * continues * next_values)


@pytest.mark.parametrize("ending, expected", [
    # deltas 1, 2, -2, -6 summed with weights (gamma lam)^k = 0.25^k
    ("runs_on", [1 + 0.25 * 2 + 0.0625 * -2 + 0.015625 * -6, 2 + 0.25 * -2 + 0.0625 * -6, -2 + 0.25 * -6, -6]),
    ("terminal", [1 + 0.25 * -8, -8]),             # delta_1 = 2 - 10 (no bootstrap), delta_0 = 1 + 5 - 5
    ("time_out", [1 + 0.25 * 2, 2]),                # delta_1 = 2 + 0.5 * 20 - 10
])
def test_gae_advantages(ending, expected):
    rewards, terminated, values, next_values, mask = episode(ending)
    advantages = build_gae_advantages(rewards, terminated, values, next_values, GAMMA, 0.5, mask)
    assert valid(advantages, mask) == pytest.approx(expected)


def test_gae_with_lambda_one_is_the_return_minus_the_value_and_zero_is_the_td_error():
    rewards, terminated, values, next_values, mask = episode("runs_on")
    mc = build_n_step_returns(rewards, terminated, next_values, GAMMA, 4, mask) - values
    torch.testing.assert_close(build_gae_advantages(rewards, terminated, values, next_values, GAMMA, 1.0, mask), mc)
    td = rewards + GAMMA * next_values - values
    torch.testing.assert_close(build_gae_advantages(rewards, terminated, values, next_values, GAMMA, 0.0, mask), td)


@pytest.mark.parametrize("ratio, advantage, objective, gradient", [
    (1.1, 2.0, 2.2, 2.0),     # inside the clip range: r A, gradient A
    (1.5, 2.0, 2.4, 0.0),     # positive advantage above 1 + eps: clipped, no gradient
    (0.5, 2.0, 1.0, 2.0),     # positive advantage below 1 - eps: the unclipped term is smaller
    (0.5, -2.0, -1.6, 0.0),   # negative advantage below 1 - eps: clipped, no gradient
    (1.5, -2.0, -3.0, -2.0),  # negative advantage above 1 + eps: the unclipped term is smaller
    (0.9, -2.0, -1.8, -2.0),  # inside the clip range
])
def test_clipped_surrogate_value_and_gradient(ratio, advantage, objective, gradient):
    ratio = torch.tensor(ratio, requires_grad=True)
    value = clipped_surrogate(ratio, torch.tensor(advantage), eps_clip=0.2)
    value.backward()
    assert value.item() == pytest.approx(objective)
    assert ratio.grad.item() == pytest.approx(gradient)


def test_value_loss_clipping_takes_the_larger_error():
    returns = torch.tensor([1.0, 1.0, 1.0])
    old = torch.tensor([0.0, 0.0, 0.0])
    values = torch.tensor([0.1, 0.5, 2.0])
    assert value_loss(values, returns).tolist() == pytest.approx([0.81, 0.25, 1.0])
    # clip 0.2 around the old values: 0.1 stays, 0.5 -> 0.2 (error 0.64 > 0.25), 2.0 -> 0.2 (0.64 < 1)
    assert value_loss(values, returns, old, 0.2).tolist() == pytest.approx([0.81, 0.64, 1.0])
