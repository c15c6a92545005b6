"""Adapter for Gymnasium multi-agent environments with tuple spaces (EPyMARL's ``gymma``)."""
import difflib
import importlib
import pickle
import time

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Discrete, Tuple, flatdim, flatten

from envs.multiagentenv import MultiAgentEnv


def _registered_id(key):
    """The Gymnasium id of ``key`` (``"module:EnvId"``), after importing ``module`` (it registers
    the id); a clear error for a missing package or an id nobody registered."""
    if not key:
        raise ValueError("env_args.key is not set: name the Gymnasium env to run, e.g. "
                         "env_args.key=lbforaging:Foraging-8x8-2p-2f-coop-v3")
    module, _, env_id = key.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"env_args.key={key!r} needs the Python package {module!r}, which could not be "
                f"imported ({error}). Install it (e.g. `pip install {module}`) or fix the key."
            ) from error
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.8)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"env_args.key={key!r}: no Gymnasium env {env_id!r} is registered"
                         f"{' after importing ' + repr(module) if module else ''}.{hint}")
    return env_id


# Arguments gymnasium.make takes itself, whatever the env.
_MAKE_ARGUMENTS = ("max_episode_steps", "autoreset", "apply_api_compatibility", "disable_env_checker",
                   "render_mode")


def check_requirements(key=None, kwargs=None, **env_args):
    """Start-up check: the env's package imports, its id is registered and its constructor takes
    every argument in ``env_args.kwargs``."""
    import inspect

    from envs import check_kwargs

    env_id = _registered_id(key)
    wrapper_arguments = inspect.signature(GymmaWrapper.__init__).parameters
    given = {**(kwargs or {}), **{k: v for k, v in env_args.items() if k not in wrapper_arguments}}
    check_kwargs(env_id, given, also_accepted=_MAKE_ARGUMENTS)


def _make_gym_env(key, make_kwargs):
    return gym.make(_registered_id(key), **make_kwargs)


class GymmaWrapper(MultiAgentEnv):
    """A Gymnasium env whose action space is a tuple of ``Discrete`` (one per agent).

    Observations are flattened and zero-padded to the largest agent's size; the state is the
    concatenation of all agents' observations unless the env offers ``state()`` with a
    ``state_space``. Every action is available (EPyMARL's choice; LBF turns an invalid action into
    NONE), padded with zeros for agents with fewer actions.

    Time-outs: ``time_limit`` ends an episode as a truncation. Envs that count their own step limit
    (``unwrapped._max_episode_steps``, as Level-Based Foraging does) and report reaching it as
    ``terminated`` are corrected: that end is a truncation unless the episode really ended there
    (for LBF: no food left). A truncation sets ``info["episode_limit"] = True``.

    Seeding: the first ``reset`` uses ``seed``; later resets continue the env's random stream, so
    a run is reproducible from its seed. Extra keyword arguments, and those in ``kwargs``, go to
    ``gymnasium.make`` (unknown ones make the env constructor fail, naming them).
    """

    def __init__(
        self,
        key,
        time_limit,
        pretrained_wrapper=None,
        seed=None,
        common_reward=True,
        reward_scalarisation="sum",
        kwargs=None,
        **make_kwargs,
    ):
        if key is None:
            raise ValueError("env_args.key is required, e.g. lbforaging:Foraging-8x8-2p-2f-coop-v3")
        if pretrained_wrapper is not None:
            raise ValueError(
                f"env_args.pretrained_wrapper={pretrained_wrapper!r} is not supported here "
                "(EPyMARL's pretrained MPE opponents are not part of this framework); set it to null"
            )
        if reward_scalarisation not in ("sum", "mean"):
            raise ValueError(f"reward_scalarisation must be 'sum' or 'mean', not {reward_scalarisation!r}")
        make_kwargs = {**(kwargs or {}), **make_kwargs}
        make_kwargs.setdefault("disable_env_checker", True)
        self._env = _make_gym_env(key, make_kwargs)
        self._unwrapped = self._env.unwrapped
        self.key = key
        self.common_reward = common_reward
        self._reward_mean = reward_scalarisation == "mean"
        self._seed = seed
        self._seeded = False

        action_spaces, observation_spaces = self._env.action_space, self._env.observation_space
        if not isinstance(action_spaces, Tuple) or not isinstance(observation_spaces, Tuple):
            raise ValueError(f"{key}: gymma needs tuple action and observation spaces (one entry per agent)")
        if not all(isinstance(space, Discrete) for space in action_spaces):
            raise ValueError(f"{key}: gymma supports Discrete actions only, got {action_spaces}")
        self.n_agents = len(action_spaces)
        self.n_actions = max(int(space.n) for space in action_spaces)
        self._avail_actions = np.zeros((self.n_agents, self.n_actions), dtype=np.int32)
        for agent_id, space in enumerate(action_spaces):
            self._avail_actions[agent_id, : int(space.n)] = 1

        self._observation_spaces = tuple(observation_spaces)
        obs_sizes = [flatdim(space) for space in self._observation_spaces]
        self.obs_size = max(obs_sizes)
        self._obs_need_padding = len(set(obs_sizes)) > 1 or not all(
            isinstance(space, Box) for space in self._observation_spaces
        )
        self._obs = np.zeros((self.n_agents, self.obs_size), dtype=np.float32)

        self._env_state = getattr(self._unwrapped, "state", None)
        state_space = getattr(self._unwrapped, "state_space", None)
        if callable(self._env_state) and state_space is not None:
            self.state_size = flatdim(state_space)
        else:
            self._env_state = None
            self.state_size = self.n_agents * self.obs_size

        own_limit = getattr(self._unwrapped, "_max_episode_steps", None)
        self._own_limit = own_limit if isinstance(own_limit, int) else None
        spec_limit = self._env.spec.max_episode_steps if self._env.spec is not None else None
        limits = [limit for limit in (time_limit, spec_limit, self._own_limit) if limit is not None]
        if not limits:
            raise ValueError(f"{key} has no step limit of its own: set env_args.time_limit")
        self.episode_limit = int(min(limits))
        self._t = 0

    # --- episode ---------------------------------------------------------------------------------
    def reset(self, seed=None, options=None):
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        obs, info = self._env.reset(seed=seed, options=options)
        self._t = 0
        self._obs = self._flatten_obs(obs)
        return self._obs, info

    def step(self, actions):
        if hasattr(actions, "tolist"):
            actions = actions.tolist()
        start = time.perf_counter()
        obs, reward, terminated, truncated, info = self._env.step(actions)
        self.step_seconds += time.perf_counter() - start
        self._t += 1
        self._obs = self._flatten_obs(obs)

        if self.common_reward:
            if isinstance(reward, (list, tuple, np.ndarray)):
                reward = float(sum(reward))
                if self._reward_mean:
                    reward /= self.n_agents
        elif isinstance(reward, (list, tuple, np.ndarray)):
            reward = np.asarray(reward, dtype=np.float64)
        else:
            reward = np.full(self.n_agents, reward, dtype=np.float64)

        if terminated and self._own_limit is not None and self._t >= self._own_limit and not self._goal_reached():
            terminated = False
            truncated = True
        if self._t >= self.episode_limit and not terminated:
            truncated = True
        if truncated and not terminated:
            info = {**info, "episode_limit": True}
        return self._obs, reward, bool(terminated), bool(truncated), info

    def _goal_reached(self):
        """Whether an env that ended at its own step limit also ended for real (LBF: all food taken)."""
        field = getattr(self._unwrapped, "field", None)
        return field is not None and not field.any()

    def _flatten_obs(self, obs):
        if not self._obs_need_padding:
            return np.asarray(obs, dtype=np.float32).reshape(self.n_agents, self.obs_size)
        padded = np.zeros((self.n_agents, self.obs_size), dtype=np.float32)
        for agent_id, (space, agent_obs) in enumerate(zip(self._observation_spaces, obs)):
            flat = flatten(space, agent_obs)
            padded[agent_id, : flat.shape[0]] = flat
        return padded

    # --- views of the current step ---------------------------------------------------------------
    def get_state(self):
        if self._env_state is not None:
            return np.asarray(self._env_state(), dtype=np.float32).reshape(-1)
        return self._obs.reshape(-1)

    # --- RNG, rendering, lifecycle ---------------------------------------------------------------
    def get_rng_state(self):
        """The env's RNG and, when it pickles, its whole state: some envs' resets depend on the
        previous episode (LBF avoids the old players' cells when it places the new ones)."""
        try:
            snapshot = pickle.dumps(self._unwrapped.__dict__)
        except Exception:  # an env holding sockets, windows, ...: the RNG alone is the best we can do
            snapshot = None
        return {"np_random": self._unwrapped.np_random.bit_generator.state, "env": snapshot}

    def set_rng_state(self, state):
        if state["env"] is not None:
            self._unwrapped.__dict__.update(pickle.loads(state["env"]))
        self._unwrapped.np_random.bit_generator.state = state["np_random"]
        self._seeded = True

    def seed(self, seed=None):
        """Sets the seed the next ``reset`` starts from."""
        self._seed = seed
        self._seeded = False

    def render(self):
        return self._env.render()

    def close(self):
        self._env.close()
