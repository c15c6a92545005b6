"""SMACv2 on StarCraft II, through the ``smacv2`` package (its ``StarCraftCapabilityEnvWrapper``).

Scenarios are our yaml files in ``src/config/envs/smacv2_configs/``; ``map_name`` picks one and
every other env_arg that is not None overrides the scenario field of the same name (nested dicts
key by key). Neither the game nor smacv2 is on a package registry, so a missing piece stops the
run at start-up, saying what to install (README, section "StarCraft II"). Without the game,
smacv2's wrapper still builds and reports its sizes; only its ``reset()`` launches StarCraft II.
"""
import copy
import difflib
import glob
import os
import random
import time

import numpy as np
import yaml

from envs.smac_battle import DRAW, LOST, WON, RewardSettings, SmacBattleEnv

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "envs",
                            "smacv2_configs")
SMACV2_INSTALL = ("pip install git+https://github.com/oxwhirl/smacv2.git (it is on no package registry; "
                  "`pip install -e .[sc2]` first pins the pysc2 and protobuf it was tested with; "
                  "README, section 'StarCraft II')")
GAME_INSTALL = ("Install the StarCraft II Linux package (4.10, from Blizzard's s2client-proto downloads) "
                "into ~/StarCraftII or set SC2PATH to where it is, and unzip smacv2's maps "
                "(https://github.com/oxwhirl/smacv2/releases/download/maps/SMAC_Maps.zip) into "
                "$SC2PATH/Maps/SMAC_Maps/ (README, section 'StarCraft II').")
# smacv2's levels of the built-in AI (the keys of its `difficulties`): "7" is SMACv2's, "8"-"A" cheat.
DIFFICULTIES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "A")
# pysc2 finds the smacv2 maps (10gen_protoss, 10gen_terran, 10gen_zerg) in this file.
SMACV2_MAP_FILE = os.path.join("Maps", "SMAC_Maps", "32x32_flat.SC2Map")


def scenario_names():
    return sorted(name[: -len(".yaml")] for name in os.listdir(SCENARIO_DIR) if name.endswith(".yaml"))


def load_scenario(map_name):
    """The scenario file's fields (smacv2's arguments, plus ``sc2_map``)."""
    path = os.path.join(SCENARIO_DIR, f"{map_name}.yaml")
    if not os.path.isfile(path):
        close = difflib.get_close_matches(str(map_name), scenario_names(), n=3)
        hint = f" Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
        raise ValueError(f"env_args.map_name={map_name!r} is not a SMACv2 scenario (no {path}).{hint} "
                         f"Scenarios: {', '.join(scenario_names())}.")
    with open(path) as f:
        return yaml.safe_load(f)


def apply_overrides(scenario, overrides):
    """``scenario`` with every non-None value of ``overrides`` put in (nested dicts key by key)."""
    merged = copy.deepcopy(scenario)
    for key, value in overrides.items():
        if isinstance(value, dict):
            merged_value = apply_overrides(merged.get(key) or {}, value)
            if merged_value:
                merged[key] = merged_value
        elif value is not None:
            merged[key] = copy.deepcopy(value)
    return merged


def scenario_settings(map_name, overrides):
    """The scenario's fields with ``overrides`` put in, and its difficulty as smacv2 takes it: a string
    (``difficulty=5`` on the command line is an int), one of ``DIFFICULTIES``."""
    scenario = apply_overrides(load_scenario(map_name), overrides)
    scenario["difficulty"] = str(scenario["difficulty"])
    if scenario["difficulty"] not in DIFFICULTIES:
        raise ValueError(f"env_args.difficulty={scenario['difficulty']!r} is not a level of StarCraft II's "
                         f"built-in AI; use one of {', '.join(DIFFICULTIES)} (SMACv2 uses 7).")
    return scenario


def import_smacv2():
    """smacv2's ``StarCraftCapabilityEnvWrapper``, or an ImportError saying how to install smacv2."""
    try:
        from smacv2.env import StarCraftCapabilityEnvWrapper
    except ImportError as error:
        raise ImportError(f"env sc2v2 needs the smacv2 package, which could not be imported ({error}). "
                          f"Install it: {SMACV2_INSTALL}. It also needs the StarCraft II game. "
                          f"{GAME_INSTALL}") from error
    return StarCraftCapabilityEnvWrapper


def check_game():
    """Raises FileNotFoundError, saying what is missing, unless StarCraft II and the maps are installed."""
    sc2_path = os.path.expanduser(os.environ.get("SC2PATH", "~/StarCraftII"))
    where = f"SC2PATH={sc2_path}" if "SC2PATH" in os.environ else f"{sc2_path} (SC2PATH is not set)"
    if not glob.glob(os.path.join(sc2_path, "Versions", "Base*", "SC2_x64")):
        raise FileNotFoundError(f"env sc2v2 needs the StarCraft II game, which is not in {where}: "
                                f"no Versions/Base*/SC2_x64 there. {GAME_INSTALL}")
    if not os.path.isfile(os.path.join(sc2_path, SMACV2_MAP_FILE)):
        raise FileNotFoundError(f"env sc2v2 needs smacv2's maps in StarCraft II: {SMACV2_MAP_FILE} is "
                                f"missing from {where}. {GAME_INSTALL}")


def check_requirements(map_name="protoss_5_vs_5", time_limit=None, seed=None, **scenario_overrides):
    """Start-up checks: the scenario exists with a valid difficulty, smacv2 imports and the game is installed."""
    scenario_settings(map_name, scenario_overrides)
    import_smacv2()
    check_game()


class SC2v2Env(SmacBattleEnv):
    """A SMACv2 scenario (``map_name``) with its fields overridden by the other env_args.

    ``time_limit`` (None: the scenario's 200 steps) ends an episode as a time-out; smacv2's own
    limit, which it reports as a terminal, becomes a time-out too. The reward is smacv2's team
    reward (``RewardSettings`` keys in the scenario). ``battle_won``, ``dead_allies`` and
    ``dead_enemies`` are in every step's info.

    Seeding: ``seed`` is the game's random seed (fixed when the game launches, at the first reset)
    and seeds smacv2's draws of unit types and start positions (its distributions' numpy
    generators, and a Python ``random`` stream of this env's own for smacv2's team shuffles).
    ``get_rng_state`` saves the draws' state; the game's own state cannot be saved.
    """

    def __init__(self, map_name="protoss_5_vs_5", time_limit=None, seed=None, common_reward=True,
                 reward_scalarisation="sum", **scenario_overrides):
        scenario = scenario_settings(map_name, scenario_overrides)
        RewardSettings.from_mapping(scenario)  # refuses a malformed reward setting before the game starts
        capability_env_class = import_smacv2()
        check_game()
        self.map_name = map_name
        self.scenario = scenario
        smacv2_args = copy.deepcopy({key: value for key, value in scenario.items() if key != "sc2_map"})
        self._env = capability_env_class(map_name=scenario["sc2_map"], seed=seed, **smacv2_args)
        info = self._env.get_env_info()
        limit = info["episode_limit"] if time_limit is None else min(int(time_limit), info["episode_limit"])
        super().__init__(info["n_agents"], scenario["capability_config"]["n_enemies"], limit, common_reward,
                         reward_scalarisation)
        self.n_actions = info["n_actions"]
        self.obs_size = info["obs_shape"]
        self.state_size = info["state_shape"]
        self._smacv2_limit = info["episode_limit"]
        self.seed(seed)

    # --- episode ---------------------------------------------------------------------------------
    def reset(self, seed=None, options=None):
        if seed is not None:
            self.seed(seed)
        # smacv2 shuffles teams with Python's global `random`: give it this env's own stream.
        process_random_state = random.getstate()
        random.setstate(self._python_random.getstate())
        try:
            self._env.reset()
        finally:
            self._python_random.setstate(random.getstate())
            random.setstate(process_random_state)
        self._t = 0
        self._read_views()
        return self._obs, {}

    def step(self, actions):
        actions = self._checked_actions(actions)
        start = time.perf_counter()
        reward, terminated, info = self._env.step(actions.tolist())
        self.step_seconds += time.perf_counter() - start
        self._read_views()
        dead_allies, dead_enemies = info.get("dead_allies", 0), info.get("dead_enemies", 0)
        return self._end_step(reward, self._outcome(terminated, info, dead_allies, dead_enemies),
                              dead_allies, dead_enemies)

    def _outcome(self, terminated, info, dead_allies, dead_enemies):
        """WON / LOST / DRAW when the battle ended, None while it goes on or when smacv2 timed out."""
        if not terminated:
            return None
        if info.get("battle_won"):
            return WON
        steps_taken = self._t + 1
        if steps_taken >= self._smacv2_limit and dead_allies < self.n_agents:
            return None  # smacv2's own time limit (never beyond ours): _end_step makes it a time-out
        # A lost battle, or a game smacv2 had to restart (empty info): the episode cannot go on.
        return DRAW if dead_allies == self.n_agents and dead_enemies == self.n_enemies else LOST

    def _read_views(self):
        self._obs = np.asarray(self._env.get_obs(), dtype=np.float32)
        self._state = np.asarray(self._env.get_state(), dtype=np.float32)
        self._avail_actions = np.asarray(self._env.get_avail_actions(), dtype=np.int32)

    def get_stats(self):
        # smacv2's own get_stats() divides by its battle count, which is 0 until a battle ended.
        return self.battle_stats.as_dict(restarts=self._env.force_restarts)

    # --- RNG, rendering, lifecycle ---------------------------------------------------------------
    def _generators(self):
        """The numpy generators of smacv2's distributions (unit types, start positions, masks)."""
        generators = []

        def collect(distribution):
            for value in vars(distribution).values():
                if isinstance(value, np.random.Generator):
                    generators.append(value)
                elif hasattr(value, "generate") and hasattr(value, "__dict__"):
                    collect(value)

        for distribution in self._env.env_key_to_distribution_map.values():
            collect(distribution)
        return generators

    def seed(self, seed=None):
        """Seeds smacv2's draws (not the game, whose seed is fixed at launch)."""
        streams = np.random.SeedSequence(seed).spawn(len(self._generators()) + 1)
        for generator, stream in zip(self._generators(), streams):
            generator.bit_generator.state = type(generator.bit_generator)(stream).state
        self._python_random = random.Random(int(streams[-1].generate_state(1)[0]))

    def get_rng_state(self):
        return {"generators": [generator.bit_generator.state for generator in self._generators()],
                "python": self._python_random.getstate()}

    def set_rng_state(self, state):
        for generator, generator_state in zip(self._generators(), state["generators"]):
            generator.bit_generator.state = generator_state
        self._python_random.setstate(state["python"])

    def render(self):
        return self._env.render()

    def save_replay(self):
        self._env.save_replay()

    def close(self):
        self._env.close()
