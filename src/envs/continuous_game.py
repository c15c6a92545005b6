"""A one-step cooperative game with continuous actions and a known optimum (for quick learning
checks of policies over continuous actions)."""
import time

import numpy as np

from envs.one_step_game import OneStepGame


def has_continuous_actions(**_):
    return True


class ContinuousGame(OneStepGame):
    """Two agents each pick a number in [-1, 1] (raw actions are clipped); both receive
    1 - (a_1 + a_2 - total)^2 - (a_1 - a_2 - gap)^2, whose optimum 1 lies at
    a_1 = (total + gap) / 2, a_2 = (total - gap) / 2 (0.7 and 0.3 by default). Neither agent can
    reach it alone: each term couples both actions. Observations and the state are constant and
    nothing is random (OneStepGame)."""

    continuous_actions = True

    def __init__(self, total=1.0, gap=0.4, seed=None, common_reward=True, reward_scalarisation="sum"):
        if not (abs(total + gap) <= 2 and abs(total - gap) <= 2):
            raise ValueError(f"total={total}, gap={gap}: the optimum must lie inside [-1, 1]^2")
        super().__init__(common_reward)
        self.total, self.gap = float(total), float(gap)
        self.n_actions = 1  # one action dimension per agent
        self._avail_actions = np.ones((self.n_agents, 1), dtype=np.int32)

    def optimum(self):
        """The best team reward and the joint action that earns it."""
        return 1.0, ((self.total + self.gap) / 2, (self.total - self.gap) / 2)

    def step(self, actions):
        start = time.perf_counter()
        first, second = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.n_agents, -1)[:, 0], -1.0, 1.0)
        reward = 1.0 - (first + second - self.total) ** 2 - (first - second - self.gap) ** 2
        self.step_seconds += time.perf_counter() - start
        return self.end(reward)
