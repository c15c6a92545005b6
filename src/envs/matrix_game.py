"""A one-step cooperative matrix game with a known optimum (for quick learning checks)."""
import time

import numpy as np

from envs.multiagentenv import MultiAgentEnv

CLIMBING_PAYOFF = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]


class MatrixGame(MultiAgentEnv):
    """Two agents each pick a row / column of ``payoff``; both receive the payoff of the joint action.

    Observations and the state are constant and nothing is random, so the game tests credit
    assignment alone (``seed`` is accepted and unused). The default is the climbing game: its
    optimum (11) sits next to the worst penalties (-30).
    """

    def __init__(self, payoff=None, seed=None, common_reward=True, reward_scalarisation="sum", **unused):
        self.payoff = np.asarray(CLIMBING_PAYOFF if payoff is None else payoff, dtype=np.float64)
        if self.payoff.ndim != 2:
            raise ValueError(f"payoff must be a matrix (list of lists), got shape {self.payoff.shape}")
        if reward_scalarisation not in ("sum", "mean"):
            raise ValueError(f"reward_scalarisation must be 'sum' or 'mean', not {reward_scalarisation!r}")
        self.n_agents = 2
        self.n_actions = max(self.payoff.shape)
        self.episode_limit = 1
        self.common_reward = common_reward
        self._obs = np.ones((self.n_agents, 1), dtype=np.float32)
        self._state = np.ones(1, dtype=np.float32)
        self._avail_actions = np.zeros((self.n_agents, self.n_actions), dtype=np.int32)
        for agent_id, size in enumerate(self.payoff.shape):
            self._avail_actions[agent_id, :size] = 1

    def optimum(self):
        """The best team payoff and the joint action that earns it."""
        row, col = np.unravel_index(np.argmax(self.payoff), self.payoff.shape)
        return float(self.payoff[row, col]), (int(row), int(col))

    def reset(self, seed=None, options=None):
        return self._obs, {}

    def step(self, actions):
        start = time.perf_counter()
        row, col = (int(a) for a in actions)
        payoff = float(self.payoff[row, col])
        self.step_seconds += time.perf_counter() - start
        # The payoff is the team reward; with per-agent rewards every agent receives it.
        reward = payoff if self.common_reward else np.full(self.n_agents, payoff)
        return self._obs, reward, True, False, {}

    def get_obs(self):
        return self._obs

    def get_obs_size(self):
        return self._obs.shape[1]

    def get_state(self):
        return self._state

    def get_state_size(self):
        return self._state.shape[0]

    def get_avail_actions(self):
        return self._avail_actions

    def get_total_actions(self):
        return self.n_actions

    def get_rng_state(self):
        return None  # the game is deterministic

    def set_rng_state(self, state):
        pass

    def seed(self, seed=None):
        pass

    def render(self):
        pass
