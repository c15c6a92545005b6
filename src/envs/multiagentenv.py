"""The interface every environment offers to the runners (EPyMARL's MultiAgentEnv)."""


class MultiAgentEnv:
    """A cooperative multi-agent environment, with discrete actions unless ``continuous_actions``.

    Subclasses set ``n_agents`` and ``episode_limit`` and implement the methods below. ``step``
    returns ``(obs, reward, terminated, truncated, info)``: ``terminated`` marks a real terminal
    state only; a time-out sets ``truncated=True`` and ``info["episode_limit"] = True`` so the
    runner stores it as not-terminated and the learner bootstraps from it.

    ``step_seconds`` accumulates the wall time spent inside the simulator's own step (without the
    wrapper's overhead); runners add it up for the throughput benchmark.

    The views of the current step read arrays a subclass keeps up to date: ``_obs``
    [n_agents, obs_size] and ``_avail_actions`` [n_agents, n_actions] (replaced, never modified,
    by the next step), and the sizes ``obs_size``, ``state_size``, ``n_actions``.

    An env with ``continuous_actions = True`` takes one float vector of ``n_actions`` dimensions
    per agent, clips it to its bounds itself, and marks in ``avail_actions`` the dimensions each
    agent really has. Its module defines ``has_continuous_actions(**env_args)`` so that a run can
    be refused before the env is built (see ``envs.has_continuous_actions``).
    """

    n_agents = 0
    episode_limit = 0
    step_seconds = 0.0
    continuous_actions = False
    obs_size = state_size = n_actions = 0
    _obs = _avail_actions = None

    def reset(self, seed=None, options=None):
        """Starts an episode; returns ``(obs, info)``."""
        raise NotImplementedError

    def step(self, actions):
        """Applies one action per agent; returns ``(obs, reward, terminated, truncated, info)``."""
        raise NotImplementedError

    def get_obs(self):
        """Observations of all agents, one row per agent."""
        return self._obs

    def get_obs_agent(self, agent_id):
        return self._obs[agent_id]

    def get_obs_size(self):
        return self.obs_size

    def get_state(self):
        """The global state (what a centralised mixer or critic sees)."""
        raise NotImplementedError

    def get_state_size(self):
        return self.state_size

    def get_avail_actions(self):
        """Available-action masks of all agents, one row of 0/1 per agent."""
        return self._avail_actions

    def get_avail_agent_actions(self, agent_id):
        return self._avail_actions[agent_id]

    def get_total_actions(self):
        """The number of actions an agent can take (the largest over agents)."""
        return self.n_actions

    def get_stats(self):
        """Environment statistics accumulated over the run (none by default)."""
        return {}

    def get_rng_state(self):
        """The environment's random-number-generator state (picklable), for checkpoint resume."""
        raise NotImplementedError

    def set_rng_state(self, state):
        """Restores a state from ``get_rng_state``; later resets continue that stream."""
        raise NotImplementedError

    def render(self):
        raise NotImplementedError

    def close(self):
        pass

    def seed(self, seed=None):
        raise NotImplementedError

    def save_replay(self):
        pass

    def get_env_info(self):
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "n_actions": self.get_total_actions(),
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
            "continuous_actions": self.continuous_actions,
        }
