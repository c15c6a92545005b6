"""SMAX (jaxmarl): SMACv2-style battles against a heuristic enemy, simulated in JAX without StarCraft II.

JAX runs on the CPU (unless ``JAX_PLATFORMS`` says otherwise), one thread per process. Each
process compiles the battle's reset and step once (a few seconds per setting); compiled code is
also kept on disk, in ``$JAX_COMPILATION_CACHE_DIR`` when that is set, else in
``~/.cache/sale_marl/jax`` (``$XDG_CACHE_HOME/sale_marl/jax``), so later runs and the parallel
runner's workers start faster.
"""
import functools
import io
import os
import secrets
import sys
import time

import numpy as np

from envs.smac_battle import RewardSettings, SmacBattleEnv, SmacReward, battle_outcome

INSTALL_HINT = ("env smax needs jaxmarl (and jax): `pip install jaxmarl==0.2.0 jax==0.10.2 jaxlib==0.10.2` "
                "(pinned in requirements.txt). See README, section 'SMAX and SMACv2'.")
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
DEFAULT_CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sale_marl", "jax")


def _import_jax():
    """jax (configured for the CPU with the on-disk compilation cache) and jaxmarl's SMAX module."""
    if "jax" not in sys.modules and "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        # SMAX's ops are too small to gain from XLA's thread pool; one thread per process keeps
        # parallel-runner workers from crowding each other (measured: +35% steps/s with 3 workers
        # on 2 cores, equal with one env).
        os.environ["XLA_FLAGS"] = " ".join(filter(None, [
            os.environ.get("XLA_FLAGS"), SINGLE_THREAD_XLA_FLAGS]))
    try:
        import jax
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", DEFAULT_CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    # Importing jaxmarl 0.2.0 sets sys.stdout and sys.stderr back to the process's originals (which
    # would cut Sacred's output capture short) and prints two lines about optional submodules.
    streams = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = io.StringIO()
    try:
        from jaxmarl.environments import smax
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = streams
    return jax, smax


def check_requirements(map_name="smacv2_5_units", **_):
    """Start-up checks: jaxmarl imports and knows the scenario."""
    _, smax = _import_jax()
    try:
        smax.map_name_to_scenario(map_name)
    except KeyError:
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

        raise ValueError(f"env_args.map_name={map_name!r} is not a SMAX scenario; choose one of "
                         f"{', '.join(sorted(MAP_NAME_TO_SCENARIO))}") from None


@functools.lru_cache(maxsize=None)
def _compiled_battle(map_name, max_steps, enemy_shoots, attack_mode, see_enemy_actions, walls_cause_death):
    """``(smax_env, reset, step)`` for one battle setting, jitted once per process and shared by
    every env built with that setting (the functions are pure).

    ``reset(key) -> (key, state, obs, world_state, avail, health, max_health)``;
    ``step(key, state, actions) -> (key, state, obs, world_state, avail, health)``: obs
    [n_allies, obs_size], avail [n_allies, n_actions], health and max_health [n_units], allies first.
    """
    check_requirements(map_name)
    jax, smax = _import_jax()
    jnp = jax.numpy
    scenario = smax.map_name_to_scenario(map_name)
    env = smax.HeuristicEnemySMAX(scenario=scenario, max_steps=max_steps, enemy_shoots=enemy_shoots,
                                  attack_mode=attack_mode, see_enemy_actions=see_enemy_actions,
                                  walls_cause_death=walls_cause_death)

    def views(state, obs):
        avail = env.get_avail_actions(state)
        return (jnp.stack([obs[agent] for agent in env.agents]), obs["world_state"],
                jnp.stack([avail[agent] for agent in env.agents]).astype(jnp.int32), state.state.unit_health)

    def reset(key):
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key)
        # Give the reset state the exact types a step returns, so `step` compiles only once.
        state = jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype=leaf.dtype), state)
        max_health = env.unit_type_health[state.state.unit_types]
        return (key, state, *views(state, obs), max_health)

    def step(key, state, actions):
        key, step_key = jax.random.split(key)
        # step_env, unlike SMAX's step, does not reset a finished battle: the final obs stay real.
        obs, state, _, _, _ = env.step_env(step_key, state, {agent: actions[i] for i, agent in enumerate(env.agents)})
        return (key, state, *views(state, obs))

    return env, jax.jit(reset), jax.jit(step)


class SMAXEnv(SmacBattleEnv):
    """jaxmarl's ``HeuristicEnemySMAX`` on a scenario named by ``map_name``: ``smacv2_5_units``,
    ``smacv2_10_units``, ``smacv2_20_units`` (SMACv2-style random unit types and start positions)
    or a SMAC-like map (``3m``, ``2s3z``, ``5m_vs_6m``, ...).

    Each agent sees SMAX's unit-list observation; the state is SMAX's world state. Actions: 4
    moves, stop (4), then one attack per enemy; the masks come from SMAX (a dead agent may only
    stop). The team reward is SMAC's (``RewardSettings``; SMAX's own reward is not used), so
    returns compare with SMACv2's. ``max_steps`` is the episode limit, reported as a time-out.

    Randomness: one JAX PRNG key, made from ``seed`` (random when None) and split at every reset
    and step, so a seed reproduces the run's episodes; ``get_rng_state`` saves the key.
    """

    def __init__(self, map_name="smacv2_5_units", max_steps=100, enemy_shoots=True, attack_mode="closest",
                 see_enemy_actions=True, walls_cause_death=True, seed=None, common_reward=True,
                 reward_scalarisation="sum", **reward_settings):
        unknown = sorted(set(reward_settings) - set(RewardSettings.names()))
        if unknown:
            raise TypeError(f"smax got unknown env_args {unknown}")
        if attack_mode not in ("closest", "random"):
            raise ValueError(f"attack_mode must be 'closest' or 'random', not {attack_mode!r}")
        self.map_name = map_name
        self._jax = _import_jax()[0]
        self._smax, self._reset, self._step = _compiled_battle(
            map_name, int(max_steps), bool(enemy_shoots), attack_mode, bool(see_enemy_actions), bool(walls_cause_death))
        n_allies = self._smax.num_allies
        super().__init__(n_allies, self._smax.num_enemies, max_steps, common_reward, reward_scalarisation)
        self.n_actions = self._smax.num_ally_actions
        self.obs_size = self._smax.obs_size
        self.state_size = self._smax.state_size
        self._reward = SmacReward(RewardSettings.from_mapping(reward_settings), n_allies)
        self._key = None
        self._battle = None
        self._health = None
        self.seed(seed)

    # --- episode ---------------------------------------------------------------------------------
    def reset(self, seed=None, options=None):
        if seed is not None:
            self.seed(seed)
        self._key, self._battle, obs, state, avail, health, max_health = self._reset(self._key)
        self._obs, self._state, self._avail_actions, self._health, max_health = self._jax.device_get(
            (obs, state, avail, health, max_health))
        self._reward.start_episode(max_health[self.n_agents:])
        self._t = 0
        return self._obs, {}

    def step(self, actions):
        actions = self._checked_actions(actions).astype(np.int32)
        start = time.perf_counter()
        self._key, self._battle, obs, state, avail, health = self._step(self._key, self._battle, actions)
        self._obs, self._state, self._avail_actions, health = self._jax.device_get((obs, state, avail, health))
        self.step_seconds += time.perf_counter() - start

        alive = health > 0
        allies_alive, enemies_alive = alive[:self.n_agents], alive[self.n_agents:]
        outcome = battle_outcome(allies_alive.any(), enemies_alive.any())
        team_reward = self._reward(self._health, health, outcome)
        self._health = health
        return self._end_step(team_reward, outcome, dead_allies=self.n_agents - allies_alive.sum(),
                              dead_enemies=self.n_enemies - enemies_alive.sum())

    # --- RNG, rendering, lifecycle ---------------------------------------------------------------
    def seed(self, seed=None):
        """Makes the PRNG key from ``seed`` (a random one when None); the next reset starts from it."""
        self._key = self._jax.random.PRNGKey(secrets.randbits(31) if seed is None else seed)

    def get_rng_state(self):
        return {"key": np.asarray(self._jax.device_get(self._key))}

    def set_rng_state(self, state):
        self._key = self._jax.numpy.asarray(state["key"])

    def render(self):
        raise NotImplementedError("smax has no live rendering; jaxmarl's SMAXVisualizer can animate saved battles")
