"""A one-step cooperative matrix game with a known optimum (for quick learning checks)."""
import time

import numpy as np

from envs.one_step_game import OneStepGame

CLIMBING_PAYOFF = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]


class MatrixGame(OneStepGame):
    """Two agents each pick a row / column of ``payoff``; both receive the payoff of the joint action.

    Observations and the state are constant and nothing is random (OneStepGame). The default is
    the climbing game: its optimum (11) sits next to the worst penalties (-30).
    """

    def __init__(self, payoff=None, seed=None, common_reward=True, reward_scalarisation="sum", **unused):
        self.payoff = np.asarray(CLIMBING_PAYOFF if payoff is None else payoff, dtype=np.float64)
        if self.payoff.ndim != 2:
            raise ValueError(f"payoff must be a matrix (list of lists), got shape {self.payoff.shape}")
        if reward_scalarisation not in ("sum", "mean"):
            raise ValueError(f"reward_scalarisation must be 'sum' or 'mean', not {reward_scalarisation!r}")
        super().__init__(common_reward)
        self.n_actions = max(self.payoff.shape)
        self._avail_actions = np.zeros((self.n_agents, self.n_actions), dtype=np.int32)
        for agent_id, size in enumerate(self.payoff.shape):
            self._avail_actions[agent_id, :size] = 1

    def optimum(self):
        """The best team payoff and the joint action that earns it."""
        row, col = np.unravel_index(np.argmax(self.payoff), self.payoff.shape)
        return float(self.payoff[row, col]), (int(row), int(col))

    def step(self, actions):
        start = time.perf_counter()
        row, col = (int(a) for a in actions)
        payoff = float(self.payoff[row, col])
        self.step_seconds += time.perf_counter() - start
        return self.end(payoff)
