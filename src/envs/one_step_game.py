"""What the one-step test games (matrix_game, continuous_game) share: two agents, one step, a
constant observation and state, nothing random."""
import numpy as np

from envs.multiagentenv import MultiAgentEnv


class OneStepGame(MultiAgentEnv):
    """Two agents act once and the episode ends (a real terminal). Observations [2, 1] and the
    state [1] are constant ones, so a game tests credit assignment alone; ``seed`` and the RNG
    state are accepted and unused. Subclasses set ``n_actions`` and ``_avail_actions`` and
    implement ``step``, returning ``self.end(team_reward)``."""

    n_agents = 2
    episode_limit = 1
    obs_size = state_size = 1

    def __init__(self, common_reward):
        self.common_reward = common_reward
        self._obs = np.ones((self.n_agents, self.obs_size), dtype=np.float32)
        self._state = np.ones(self.state_size, dtype=np.float32)

    def end(self, team_reward):
        """The step's return: the team reward, or with per-agent rewards every agent receiving it."""
        reward = team_reward if self.common_reward else np.full(self.n_agents, team_reward)
        return self._obs, reward, True, False, {}

    def reset(self, seed=None, options=None):
        return self._obs, {}

    def get_state(self):
        return self._state

    def get_rng_state(self):
        return None  # the game is deterministic

    def set_rng_state(self, state):
        pass

    def seed(self, seed=None):
        pass

    def render(self):
        pass
