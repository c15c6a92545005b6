"""Multi-Agent MuJoCo (gymnasium-robotics' ``mamujoco_v1``) as a MultiAgentEnv."""
import itertools
import numbers
import time
import warnings

import numpy as np
from gymnasium.spaces import Tuple

from envs.multiagentenv import MultiAgentEnv

MAX_DISCRETE_ACTIONS = 4096  # refuse discretisations whose Q-heads would be absurdly wide


def _import_mamujoco():
    """The modules, with MuJoCo's warnings routed to Python's ``warnings`` (shown once per
    process) instead of stderr plus a MUJOCO_LOG.TXT appended to in the working directory."""
    try:
        import mujoco
        from gymnasium_robotics import mamujoco_v1
        from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges
    except ImportError as error:
        raise ImportError(
            f"--env-config=mamujoco needs gymnasium-robotics and mujoco ({error}). Install them with "
            "`pip install gymnasium-robotics==1.4.2 mujoco==3.17.0` (both are in requirements.txt)."
        ) from error
    mujoco.set_mju_user_warning(_mujoco_warning)
    return mamujoco_v1, get_parts_and_edges


def has_continuous_actions(action_bins=11, **_):
    """Continuous actions when ``action_bins`` is null (checked before the env is built)."""
    return action_bins is None


def check_requirements(scenario=None, kwargs=None, **_):
    """Start-up check: gymnasium-robotics and mujoco import, and the MuJoCo env of ``scenario``
    takes every argument in ``env_args.kwargs``."""
    import gymnasium as gym

    from envs import check_kwargs

    _import_mamujoco()
    env_id = f"{scenario}-v5"
    if kwargs and env_id in gym.registry:
        check_kwargs(env_id, kwargs, also_accepted=("max_episode_steps",))


def _mujoco_warning(text):
    if "'settotalmass' is deprecated" in text:  # in gymnasium's own HalfCheetah model: not the user's to fix
        return
    warnings.warn(f"MuJoCo: {text}", RuntimeWarning, stacklevel=2)


def _one_joint_per_agent(scenario, agent_conf, get_parts_and_edges):
    """The factorisation ``"<n>x1"`` that gives each of the robot's n joints its own agent, for
    robots whose ``<n>x1`` gymnasium-robotics does not name (Ant 8x1, Walker2d 6x1). Agents follow
    gymnasium-robotics' single-agent joint order; None when ``agent_conf`` is not of that form."""
    try:
        (joints,), edges, global_nodes = get_parts_and_edges(scenario, None)
    except Exception:  # a scenario without a single-agent graph (ManySegment*, unknown names)
        return None
    if agent_conf != f"{len(joints)}x1":
        return None
    return {"partition": [(joint,) for joint in joints], "edges": edges, "globals": global_nodes}


def _make_parallel_env(scenario, agent_conf, agent_obsk, make_kwargs):
    mamujoco_v1, get_parts_and_edges = _import_mamujoco()
    try:
        get_parts_and_edges(scenario, agent_conf)
        factorization = None
    except Exception as error:  # gymnasium-robotics raises a bare Exception for unknown confs
        factorization = _one_joint_per_agent(scenario, agent_conf, get_parts_and_edges)
        if factorization is None:
            raise ValueError(
                f"MaMuJoCo has no agent_conf {agent_conf!r} for scenario {scenario!r} ({error}). Use a conf "
                "gymnasium-robotics defines (e.g. HalfCheetah 2x3/6x1, Hopper 3x1, Ant 2x4/2x4d/4x2, "
                "Walker2d 2x3) or '<number of joints>x1' for one joint per agent (Ant 8x1, Walker2d 6x1)."
            ) from None
    return mamujoco_v1.parallel_env(scenario, agent_conf, agent_obsk=agent_obsk,
                                    agent_factorization=factorization, **make_kwargs)


class MaMuJoCoWrapper(MultiAgentEnv):
    """A MaMuJoCo robot whose joints are split among agents (``scenario`` + ``agent_conf``).

    Observations are MaMuJoCo's per-agent observations (``agent_obsk`` joints deep), zero-padded
    to the largest agent's size; the state is the single-agent env's full observation; the reward
    is the team reward (with ``common_reward: False`` every agent gets it; ``reward_scalarisation``
    has nothing to combine). Falling over (Hopper, Walker2d, Ant) is a real terminal;
    ``time_limit`` (MuJoCo's usual 1000 steps) is a time-out: ``truncated=True``,
    ``info["episode_limit"] = True``.

    Actions: with ``action_bins`` = n each action dimension takes n evenly spaced values from its
    low to its high bound (11 bins over [-1, 1]: -1, -0.8, ..., 1) and an agent picks one index
    (an agent with d dimensions picks one of n**d combinations). With ``action_bins: None`` the
    env takes continuous actions, one row of floats per agent; ``continuous_action_space`` holds
    the per-agent Boxes and ``get_total_actions()`` is the largest action dimension. Value-based
    learners need the discrete form: given integer actions in continuous mode, ``step`` raises.

    Final-step info, logged by the runners as ``<key>_mean``: the robot's position and velocity
    (``x_position``, ``x_velocity``, ...) and ``return_<term>``, the episode sum of each reward term
    (``return_forward``, ``return_ctrl``, ``return_survive``, ...).

    Seeding: the first ``reset`` uses ``seed``; later resets continue the env's random stream.
    """

    def __init__(
        self,
        scenario,
        agent_conf,
        agent_obsk=1,
        action_bins=11,
        time_limit=1000,
        render_mode=None,
        kwargs=None,
        seed=None,
        common_reward=True,
        reward_scalarisation="sum",
    ):
        if action_bins is not None and action_bins < 2:
            raise ValueError(f"env_args.action_bins must be at least 2 (or null for continuous actions), "
                             f"not {action_bins}")
        if time_limit is None or time_limit < 1:
            raise ValueError(f"env_args.time_limit must be a positive number of steps, not {time_limit}")
        self._env = _make_parallel_env(scenario, agent_conf, agent_obsk,
                                       {**(kwargs or {}), "render_mode": render_mode,
                                        "max_episode_steps": time_limit})
        self._unwrapped = self._env.single_agent_env.unwrapped
        self.scenario, self.agent_conf = scenario, agent_conf
        self.common_reward = common_reward
        self._seed = seed
        self._seeded = False
        self.episode_limit = int(time_limit)

        self._agents = list(self._env.possible_agents)
        self.n_agents = len(self._agents)
        obs_sizes = [self._env.observation_space(agent).shape[0] for agent in self._agents]
        self.obs_size = max(obs_sizes)
        self.state_size = int(np.prod(self._env.single_agent_env.observation_space.shape))
        self._obs = np.zeros((self.n_agents, self.obs_size), dtype=np.float32)

        action_boxes = [self._env.action_space(agent) for agent in self._agents]
        self.continuous_action_space = Tuple(action_boxes)
        self.action_bins = action_bins
        self.continuous_actions = action_bins is None
        if action_bins is None:
            self._action_tables = None
            action_counts = [box.shape[0] for box in action_boxes]
        else:
            self._action_tables = [self._discretise(box, action_bins) for box in action_boxes]
            action_counts = [len(table) for table in self._action_tables]
        self.n_actions = max(action_counts)
        self._avail_actions = np.zeros((self.n_agents, self.n_actions), dtype=np.int32)
        for agent_id, count in enumerate(action_counts):
            self._avail_actions[agent_id, :count] = 1
        self._returns = {}

    @staticmethod
    def _discretise(box, action_bins):
        """Every combination of ``action_bins`` evenly spaced values per dimension, one row each."""
        if action_bins ** box.shape[0] > MAX_DISCRETE_ACTIONS:
            raise ValueError(
                f"{action_bins} bins for an agent with {box.shape[0]} action dimensions give "
                f"{action_bins ** box.shape[0]} discrete actions; use fewer env_args.action_bins or an "
                f"agent_conf with fewer joints per agent")
        values = [np.linspace(low, high, action_bins) for low, high in zip(box.low, box.high)]
        return np.array(list(itertools.product(*values)), dtype=np.float32)

    # --- episode ---------------------------------------------------------------------------------
    def reset(self, seed=None, options=None):
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        observations, _ = self._env.reset(seed=seed, options=options)
        self._returns = {}
        self._write_obs(observations)
        return self._obs, {}

    def step(self, actions):
        agent_actions = self._agent_actions(actions)
        start = time.perf_counter()
        observations, rewards, terminations, truncations, infos = self._env.step(agent_actions)
        self.step_seconds += time.perf_counter() - start
        self._write_obs(observations)

        first = self._agents[0]
        reward = float(rewards[first])
        terminated = bool(terminations[first])
        truncated = bool(truncations[first]) and not terminated  # a fall on the last step is a fall
        info = self._episode_info(infos[first])
        if truncated and not terminated:
            info["episode_limit"] = True
        if not self.common_reward:
            reward = np.full(self.n_agents, reward)
        return self._obs, reward, terminated, truncated, info

    def _agent_actions(self, actions):
        if self._action_tables is not None:
            return {agent: table[int(action)]
                    for agent, table, action in zip(self._agents, self._action_tables, actions)}
        agent_actions = {}
        for agent, box, action in zip(self._agents, self.continuous_action_space, actions):
            action = np.asarray(action)
            if not np.issubdtype(action.dtype, np.floating):
                raise TypeError(
                    "env_args.action_bins is null (continuous actions), but step got integer action indices. "
                    "Value-based methods (IQL, VDN, QMIX) need discrete actions: set env_args.action_bins "
                    "(e.g. 11).")
            agent_actions[agent] = np.clip(action.reshape(-1)[: box.shape[0]], box.low, box.high)
        return agent_actions

    def _write_obs(self, observations):
        """Pads each agent's observation into a fresh array (callers may keep the previous one)."""
        padded = np.zeros((self.n_agents, self.obs_size), dtype=np.float32)
        for agent_id, agent in enumerate(self._agents):
            agent_obs = observations[agent]
            padded[agent_id, : agent_obs.shape[0]] = agent_obs
        self._obs = padded

    def _episode_info(self, env_info):
        """Position and velocity as the env reports them; reward terms summed over the episode."""
        info = {}
        for key, value in env_info.items():
            if not isinstance(value, numbers.Number):
                continue
            if key.startswith("reward_"):
                name = "return_" + key[len("reward_"):]
                self._returns[name] = self._returns.get(name, 0.0) + float(value)
            else:
                info[key] = float(value)
        info.update(self._returns)
        return info

    # --- views of the current step ---------------------------------------------------------------
    def get_state(self):
        return np.asarray(self._env.state(), dtype=np.float32)

    def action_values(self, agent_id):
        """The continuous action each discrete action index of ``agent_id`` stands for, one row each."""
        return self._action_tables[agent_id]

    # --- RNG, rendering, lifecycle ---------------------------------------------------------------
    def get_rng_state(self):
        """The RNG that draws each episode's initial pose (MuJoCo itself is deterministic)."""
        return {"np_random": self._unwrapped.np_random.bit_generator.state}

    def set_rng_state(self, state):
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
