"""The interface every environment offers to the runners (EPyMARL's MultiAgentEnv)."""


class MultiAgentEnv:
    """A cooperative multi-agent environment with discrete actions.

    Subclasses set ``n_agents`` and ``episode_limit`` and implement the methods below. ``step``
    returns ``(obs, reward, terminated, truncated, info)``: ``terminated`` marks a real terminal
    state only; a time-out sets ``truncated=True`` and ``info["episode_limit"] = True`` so the
    runner stores it as not-terminated and the learner bootstraps from it.

    ``step_seconds`` accumulates the wall time spent inside the simulator's own step (without the
    wrapper's overhead); runners add it up for the throughput benchmark.
    """

    n_agents = 0
    episode_limit = 0
    step_seconds = 0.0

    def reset(self, seed=None, options=None):
        """Starts an episode; returns ``(obs, info)``."""
        raise NotImplementedError

    def step(self, actions):
        """Applies one action per agent; returns ``(obs, reward, terminated, truncated, info)``."""
        raise NotImplementedError

    def get_obs(self):
        """Observations of all agents, one row per agent."""
        raise NotImplementedError

    def get_obs_agent(self, agent_id):
        return self.get_obs()[agent_id]

    def get_obs_size(self):
        raise NotImplementedError

    def get_state(self):
        """The global state (what a centralised mixer or critic sees)."""
        raise NotImplementedError

    def get_state_size(self):
        raise NotImplementedError

    def get_avail_actions(self):
        """Available-action masks of all agents, one row of 0/1 per agent."""
        raise NotImplementedError

    def get_avail_agent_actions(self, agent_id):
        return self.get_avail_actions()[agent_id]

    def get_total_actions(self):
        """The number of actions an agent can take (the largest over agents)."""
        raise NotImplementedError

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
        }
