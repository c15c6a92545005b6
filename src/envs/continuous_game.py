"""A one-step cooperative game with continuous actions and a known optimum (for quick learning
checks of policies over continuous actions)."""
import time

import numpy as np

from envs.multiagentenv import MultiAgentEnv


def has_continuous_actions(**_):
    return True


class ContinuousGame(MultiAgentEnv):
    """Two agents each pick a number in [-1, 1] (raw actions are clipped); both receive
    1 - (a_1 + a_2 - total)^2 - (a_1 - a_2 - gap)^2, whose optimum 1 lies at
    a_1 = (total + gap) / 2, a_2 = (total - gap) / 2 (0.7 and 0.3 by default). Neither agent can
    reach it alone: each term couples both actions. Observations and the state are constant and
    nothing is random (``seed`` is accepted and unused)."""

    continuous_actions = True

    def __init__(self, total=1.0, gap=0.4, seed=None, common_reward=True, reward_scalarisation="sum"):
        if not (abs(total + gap) <= 2 and abs(total - gap) <= 2):
            raise ValueError(f"total={total}, gap={gap}: the optimum must lie inside [-1, 1]^2")
        self.total, self.gap = float(total), float(gap)
        self.n_agents = 2
        self.n_actions = 1  # one action dimension per agent
        self.episode_limit = 1
        self.common_reward = common_reward
        self._obs = np.ones((self.n_agents, 1), dtype=np.float32)
        self._state = np.ones(1, dtype=np.float32)
        self._avail_actions = np.ones((self.n_agents, 1), dtype=np.int32)

    def optimum(self):
        """The best team reward and the joint action that earns it."""
        return 1.0, ((self.total + self.gap) / 2, (self.total - self.gap) / 2)

    def reset(self, seed=None, options=None):
        return self._obs, {}

    def step(self, actions):
        start = time.perf_counter()
        first, second = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.n_agents, -1)[:, 0], -1.0, 1.0)
        reward = 1.0 - (first + second - self.total) ** 2 - (first - second - self.gap) ** 2
        self.step_seconds += time.perf_counter() - start
        reward = reward if self.common_reward else np.full(self.n_agents, reward)
        return self._obs, reward, True, False, {}

    def get_state(self):
        return self._state

    def get_state_size(self):
        return self._state.shape[0]

    def get_obs_size(self):
        return self._obs.shape[1]

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
