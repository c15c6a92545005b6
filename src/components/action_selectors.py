"""Action selectors: turn agent outputs into actions, never picking an unavailable action.

Each is built as ``cls(args)`` and provides
``select_action(agent_inputs [bs, n_agents, n_actions], avail_actions (same shape), t_env,
test_mode=False) -> LongTensor [bs, n_agents]`` and an ``epsilon`` attribute for logging.
Epsilon-greedy draws from NumPy's global RNG, the sampling selectors from torch's; seeding both
(as run.py does) makes selection reproducible.
"""
import numpy as np
import torch

from components.epsilon_schedules import DecayThenFlatSchedule
from components.policy_distributions import GaussianPolicy


def _sample(probs):
    """One draw per row of the last axis (unnormalised weights allowed). torch.multinomial is
    ~10x cheaper than building a Categorical, which matters at one call per env step."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1).view(probs.shape[:-1])


def _masked_probs(probs, avail_actions):
    """Zero the probability of unavailable actions; a row left with no mass becomes uniform
    over its available actions."""
    available = avail_actions > 0
    masked = probs.masked_fill(~available, 0.0)
    no_mass = masked.sum(dim=-1, keepdim=True) <= 0
    return torch.where(no_mass, available.to(masked.dtype), masked)


class EpsilonGreedyActionSelector:
    """Greedy over available actions; with probability epsilon a uniformly random available one.

    Epsilon follows a linear schedule from ``epsilon_start`` to ``epsilon_finish`` over
    ``epsilon_anneal_time`` steps; test mode uses ``evaluation_epsilon`` (default 0).
    """

    def __init__(self, args):
        self.schedule = DecayThenFlatSchedule(args.epsilon_start, args.epsilon_finish,
                                              args.epsilon_anneal_time, decay="linear")
        self.evaluation_epsilon = getattr(args, "evaluation_epsilon", 0.0)
        self.epsilon = self.schedule.eval(0)

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        self.epsilon = self.schedule.eval(t_env)
        epsilon = self.evaluation_epsilon if test_mode else self.epsilon
        # NumPy on the CPU: this runs once per env step on a few numbers, where each torch op
        # costs several microseconds of dispatch. Randomness comes from NumPy's global RNG.
        q_values = agent_inputs.detach().cpu().numpy()
        available = avail_actions.cpu().numpy() > 0
        actions = np.where(available, q_values, -np.inf).argmax(axis=-1)
        if epsilon > 0.0:
            # One uniform draw per action plus one for the explore coin: the arg-max of uniform
            # noise over the available actions is a uniformly random available action.
            noise = np.random.random_sample(available.shape[:-1] + (available.shape[-1] + 1,))
            random = np.where(available, noise[..., :-1], -1.0).argmax(axis=-1)
            actions = np.where(noise[..., -1] < epsilon, random, actions)
        return torch.from_numpy(actions).to(agent_inputs.device)


class MultinomialActionSelector:
    """Sample from the given action probabilities restricted to available actions.

    In test mode with ``test_greedy`` (default True) it takes the most probable available
    action. It does no epsilon exploration, so ``epsilon`` is 0.
    """

    def __init__(self, args):
        self.test_greedy = getattr(args, "test_greedy", True)
        self.epsilon = 0.0

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        probs = _masked_probs(agent_inputs, avail_actions)
        if test_mode and self.test_greedy:
            return probs.argmax(dim=-1)
        return _sample(probs)


class SoftPoliciesSelector:
    """Always sample from the given action probabilities restricted to available actions
    (also in test mode). It does no epsilon exploration, so ``epsilon`` is 0."""

    def __init__(self, args):
        self.epsilon = 0.0

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        return _sample(_masked_probs(agent_inputs, avail_actions))


class GaussianActionSelector:
    """Continuous actions from a Gaussian policy's [mean, log_std] outputs: a draw, or (test mode
    with ``test_greedy``) the mean. Returns raw float actions [bs, n_agents, n_actions]; the env
    clips them to its bounds. Chosen by the controller when the env's actions are continuous,
    not through ``action_selector`` (its output is not an index)."""

    def __init__(self, args):
        self.test_greedy = getattr(args, "test_greedy", True)
        self.epsilon = 0.0

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        return GaussianPolicy.sample(agent_inputs, avail_actions.to(agent_inputs.dtype),
                                     greedy=test_mode and self.test_greedy)


REGISTRY = {
    "epsilon_greedy": EpsilonGreedyActionSelector,
    "multinomial": MultinomialActionSelector,
    "soft_policies": SoftPoliciesSelector,
}
