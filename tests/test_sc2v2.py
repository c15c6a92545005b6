"""sc2v2 (SMACv2): scenario files, command-line overrides and start-up errors, checked against the
real smacv2 package; battles stepped on a stand-in.

smacv2 is installed in CI (from the unmodified copy in ../shared/smacv2) and by users from GitHub;
StarCraft II cannot be installed here. Without the game, the real ``StarCraftCapabilityEnvWrapper``
builds, reports its sizes and draws teams and start positions; only its ``reset()`` launches the
game. So the ``real_smacv2`` tests use the real package (skipped only where it is not installed),
with a fake game folder (empty files) where our start-up check must pass. Stepping a battle needs
the game: those tests run on a STAND-IN for smacv2 (tests/smacv2_standin), a toy battle behind
smacv2's API whose arguments, sizes and draws are themselves checked against the real package here.
"""
import copy
import importlib.util
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from envs import REGISTRY as env_REGISTRY
from envs.sc2v2 import DIFFICULTIES, load_scenario, scenario_names
from helpers import TINY, main_command, metric, read_json, sacred_runs, without_package
from main import main
from smacv2_standin import STANDIN_PATH, forget_smacv2, install_fake_game, standin_env_vars, use_smacv2_standin
from run_config import CONFIG_DIR, ConfigError, build_config, parse_command_line

RACE_UNITS = {"protoss": ["stalker", "zealot", "colossus"], "terran": ["marine", "marauder", "medivac"],
              "zerg": ["zergling", "baneling", "hydralisk"]}
SIZES = ("obs_shape", "state_shape", "n_actions", "n_agents", "episode_limit")
OUR_ENV_ARGS = {"map_name", "time_limit"}  # sc2v2.yaml's keys that are ours, not smacv2's


def make_sc2v2(**env_args):
    return env_REGISTRY["sc2v2"](**env_args, common_reward=True, reward_scalarisation="sum")


def smacv2_arguments(map_name, seed=0):
    """The keyword arguments for smacv2's wrapper that a scenario file stands for."""
    scenario = load_scenario(map_name)
    arguments = {key: value for key, value in scenario.items() if key != "sc2_map"}
    return {**copy.deepcopy(arguments), "map_name": scenario["sc2_map"], "seed": seed}


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """The stand-in's ``smacv2.env`` module (its ``CREATED`` lists every env's keyword arguments)."""
    use_smacv2_standin(monkeypatch, tmp_path)
    import smacv2.env

    return smacv2.env


@pytest.fixture
def real_smacv2(monkeypatch):
    """The real ``smacv2.env`` module; skips where smacv2 is not installed (CI installs it)."""
    forget_smacv2(monkeypatch)
    module = pytest.importorskip("smacv2.env", reason="smacv2 is not installed (README, section 'StarCraft II')")
    assert not module.__file__.startswith(STANDIN_PATH)
    return module


@pytest.fixture
def fake_game(monkeypatch, tmp_path):
    """SC2PATH at a folder laid out like StarCraft II (empty files): passes our start-up check only."""
    monkeypatch.setenv("SC2PATH", install_fake_game(tmp_path / "StarCraftII"))


def standin_module():
    """The stand-in's ``smacv2.env`` under another name, to compare beside the real one."""
    spec = importlib.util.spec_from_file_location(
        "smacv2_standin_env", os.path.join(STANDIN_PATH, "smacv2", "env", "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drawn_layout(episode_config):
    """An episode's draws (teams, start positions, masks) with each drawn list or array reduced to its shape."""
    return {key: {field: value if field == "id" else np.shape(value) for field, value in entry.items()}
            for key, entry in episode_config.items()}


class GameLaunch(Exception):
    """Raised in place of launching StarCraft II."""


def first_draws(env, seed=None):
    """The teams and start positions the real smacv2 draws at ``env.reset(seed)``, caught where its
    ``reset`` would hand them to the game (the one step that needs StarCraft II)."""
    drawn = []

    def launch_game(episode_config):
        drawn.append(episode_config)
        raise GameLaunch

    env._env.env.reset = launch_game
    with pytest.raises(GameLaunch):
        env.reset(seed=seed)
    return drawn[0]


# --- scenarios and overrides ----------------------------------------------------------------------
def test_the_fifteen_scenarios_follow_smacv2s_documented_settings():
    names = scenario_names()
    assert names == sorted(f"{race}_{size}" for race in RACE_UNITS
                           for size in ("5_vs_5", "10_vs_10", "20_vs_20", "10_vs_11", "20_vs_23"))
    declared = yaml.safe_load(open(os.path.join(CONFIG_DIR, "envs", "sc2v2.yaml")))["env_args"]
    for name in names:
        race, n_units, _, n_enemies = name.split("_")
        scenario = load_scenario(name)
        capabilities = scenario["capability_config"]
        assert scenario["sc2_map"] == f"10gen_{race}"
        assert (capabilities["n_units"], capabilities["n_enemies"]) == (int(n_units), int(n_enemies))
        assert capabilities["team_gen"]["unit_types"] == RACE_UNITS[race]
        assert sum(capabilities["team_gen"]["weights"]) == pytest.approx(1.0)
        assert capabilities["start_positions"] == {"dist_type": "surrounded_and_reflect", "p": 0.5,
                                                   "map_x": 32, "map_y": 32}
        assert (scenario["difficulty"], scenario["reward_win"], scenario["reward_scale_rate"]) == ("7", 200, 20)
        assert scenario["use_unit_ranges"] and scenario["min_attack_range"] == 2
        # Every field can be overridden from the command line: sc2v2.yaml declares it.
        overridable = set(scenario) - {"sc2_map"}
        assert overridable <= set(declared), overridable - set(declared)
        for key in ("team_gen", "start_positions"):
            assert set(capabilities[key]) <= set(declared["capability_config"][key])


def test_the_command_line_reaches_env_args_and_typos_are_refused():
    config = build_config("qmix", "sc2v2", [("env_args.map_name", "terran_5_vs_5"), ("seed", 3),
                                            ("env_args.capability_config.n_units", 3),
                                            ("env_args.capability_config.team_gen.weights", [0.5, 0.5, 0.0])])
    env_args = config["env_args"]
    assert env_args["seed"] == 3 and env_args["map_name"] == "terran_5_vs_5"
    assert env_args["capability_config"]["n_units"] == 3
    assert env_args["capability_config"]["team_gen"]["weights"] == [0.5, 0.5, 0.0]
    with pytest.raises(ConfigError, match="env_args.capability_config.n_units"):
        build_config("qmix", "sc2v2", [("env_args.capability_config.n_unit", 3)])


# --- against the real smacv2 (no game) ------------------------------------------------------------
def test_our_difficulties_are_smacv2s_and_a_bad_one_stops_the_run(real_smacv2, tmp_path, capsys):
    assert DIFFICULTIES == tuple(real_smacv2.starcraft2.starcraft2.difficulties)
    code = main(["--config=qmix", "--env-config=sc2v2", "with", f"local_results_path={tmp_path}",
                 "env_args.difficulty=hard"])
    assert code == 2 and "env_args.difficulty='hard'" in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_every_env_arg_we_declare_is_an_argument_of_smacv2(real_smacv2):
    accepted = set(inspect.signature(real_smacv2.StarCraft2Env.__init__).parameters) - {"self"}
    declared = yaml.safe_load(open(os.path.join(CONFIG_DIR, "envs", "sc2v2.yaml")))["env_args"]
    assert set(declared) - OUR_ENV_ARGS <= accepted, set(declared) - OUR_ENV_ARGS - accepted
    assert standin_module().STARCRAFT2ENV_ARGS == accepted  # the stand-in refuses what smacv2 refuses


@pytest.mark.parametrize("map_name", scenario_names())
def test_our_sizes_are_the_real_smacv2s(real_smacv2, fake_game, map_name):
    real = real_smacv2.StarCraftCapabilityEnvWrapper(**smacv2_arguments(map_name)).get_env_info()
    ours = make_sc2v2(map_name=map_name, seed=0)
    assert {key: ours.get_env_info()[key] for key in SIZES} == {key: real[key] for key in SIZES}
    _, n_units, _, n_enemies = map_name.split("_")
    assert (ours.n_agents, ours.n_enemies) == (int(n_units), int(n_enemies))
    assert (ours.n_actions, ours.episode_limit) == (6 + int(n_enemies), 200)  # SMAC's 6 + one attack per enemy
    assert ours.get_stats()["restarts"] == 0  # before any battle (smacv2's own get_stats divides by zero)
    if map_name == "protoss_5_vs_5":  # the figures UPSTREAM.md recorded for the real package
        assert (ours.obs_size, ours.state_size) == (92, 130)


@pytest.mark.parametrize("map_name", scenario_names())
def test_the_standin_draws_and_sizes_like_the_real_smacv2(real_smacv2, map_name):
    arguments = smacv2_arguments(map_name)
    real = real_smacv2.StarCraftCapabilityEnvWrapper(**copy.deepcopy(arguments))
    toy = standin_module().StarCraftCapabilityEnvWrapper(**copy.deepcopy(arguments))
    for key in ("n_agents", "n_actions", "episode_limit"):
        assert toy.get_env_info()[key] == real.get_env_info()[key], key
    assert toy.env_key_to_distribution_map.keys() == real.env_key_to_distribution_map.keys()
    for key, distribution in real.env_key_to_distribution_map.items():
        real_draw = distribution.generate()
        assert drawn_layout(toy.env_key_to_distribution_map[key].generate()) == drawn_layout(real_draw), key


@pytest.mark.parametrize("map_name", scenario_names())
def test_command_line_overrides_and_the_seed_reach_the_real_smacv2(real_smacv2, fake_game, map_name):
    weights = [0.2, 0.3, 0.5]
    config = build_config(*parse_command_line([
        "--config=qmix", "--env-config=sc2v2", "with", f"env_args.map_name={map_name}", "seed=11",
        "env_args.capability_config.n_units=8", "env_args.capability_config.team_gen.weights=[0.2, 0.3, 0.5]",
        "env_args.reward_sparse=True", "env_args.difficulty=5", "env_args.obs_last_action=True",  # 5: an int
        "env_args.capability_config.enemy_mask.dist_type=mask",
        "env_args.capability_config.enemy_mask.mask_probability=0.25"]))
    env = env_REGISTRY["sc2v2"](**config["env_args"], common_reward=config["common_reward"],
                                reward_scalarisation=config["reward_scalarisation"])
    game = env._env.env  # smacv2's StarCraft2Env
    n_enemies = load_scenario(map_name)["capability_config"]["n_enemies"]
    assert game._seed == 11  # the game's random seed, used when it launches
    assert (game.reward_sparse, game.difficulty, game.obs_last_action) == (True, "5", True)
    assert (game.n_agents, game.n_enemies, env.n_agents, env.n_enemies) == (8, n_enemies, 8, n_enemies)
    distributions = env._env.env_key_to_distribution_map
    assert distributions["team_gen"].weights.tolist() == weights
    assert distributions["team_gen"].units.tolist() == RACE_UNITS[map_name.split("_")[0]]
    assert distributions["enemy_mask"].mask_probability == 0.25 and game.mask_enemies
    draws = first_draws(env)
    assert len(draws["team_gen"]["ally_team"]) == 8 and draws["enemy_mask"]["item"].shape == (8, n_enemies)


def test_the_seed_fixes_the_real_smacv2s_draws(real_smacv2, fake_game):
    """Teams and start positions come from smacv2's own distributions (caught before the game starts)."""
    draws = [first_draws(make_sc2v2(map_name="terran_10_vs_11", seed=seed)) for seed in (5, 5, 6)]
    np.testing.assert_equal(draws[0], draws[1])
    with pytest.raises(AssertionError):
        np.testing.assert_equal(draws[0], draws[2])
    np.testing.assert_equal(first_draws(make_sc2v2(map_name="terran_10_vs_11", seed=6), seed=5), draws[0])


# --- start-up errors ------------------------------------------------------------------------------
def test_missing_smacv2_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "smacv2", None)
    monkeypatch.setitem(sys.modules, "smacv2.env", None)
    with pytest.raises(ImportError, match="pip install git\\+https://github.com/oxwhirl/smacv2.git"):
        make_sc2v2(map_name="protoss_5_vs_5", seed=0)


def test_missing_game_or_maps_say_what_to_install(real_smacv2, monkeypatch, tmp_path):
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nothing_here"))
    with pytest.raises(FileNotFoundError, match="StarCraft II game.*nothing_here.*SC2PATH"):
        make_sc2v2(map_name="protoss_5_vs_5", seed=0)

    game = install_fake_game(tmp_path / "no_maps")
    os.remove(os.path.join(game, "Maps", "SMAC_Maps", "32x32_flat.SC2Map"))
    monkeypatch.setenv("SC2PATH", game)
    with pytest.raises(FileNotFoundError, match="smacv2's maps"):
        make_sc2v2(map_name="protoss_5_vs_5", seed=0)


def test_an_unknown_map_name_lists_the_scenarios():
    with pytest.raises(ValueError, match="'protoss_5_vs_5'.*Scenarios: protoss_10_vs_10"):
        make_sc2v2(map_name="protoss_5v5", seed=0)


def test_the_run_stops_at_start_up_without_smacv2(tmp_path):
    result = subprocess.run(without_package(main_command("qmix", "sc2v2", tmp_path, TINY), "smacv2"),
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 2
    assert "env sc2v2 needs the smacv2 package" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "sacred")   # stopped before Sacred or any env started


@pytest.mark.parametrize("map_name", scenario_names())
def test_with_smacv2_but_no_game_the_run_stops_at_start_up(real_smacv2, monkeypatch, tmp_path, capsys, map_name):
    monkeypatch.setenv("SC2PATH", str(tmp_path / "no_game"))
    code = main(["--config=qmix", "--env-config=sc2v2", "with", f"local_results_path={tmp_path}",
                 f"env_args.map_name={map_name}"])
    assert code == 2
    assert "env sc2v2 needs the StarCraft II game" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # stopped before Sacred or any env started


def test_with_smacv2_but_no_game_the_process_exits_with_our_message(real_smacv2, monkeypatch, tmp_path):
    """What a user sees: our message, not the FileNotFoundError smacv2 raises when it launches the game."""
    monkeypatch.setenv("SC2PATH", str(tmp_path / "no_game"))
    with pytest.raises(FileNotFoundError):
        real_smacv2.StarCraftCapabilityEnvWrapper(**smacv2_arguments("protoss_5_vs_5")).reset()
    result = subprocess.run(main_command("qmix", "sc2v2", tmp_path, TINY), capture_output=True, text=True,
                            cwd=str(tmp_path), timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "env sc2v2 needs the StarCraft II game" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


def test_an_unknown_map_name_stops_the_run_at_start_up(tmp_path):
    result = subprocess.run(main_command("qmix", "sc2v2", tmp_path, [*TINY, "env_args.map_name=protoss_5v5"]),
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 2 and "'protoss_5v5'" in result.stderr and "protoss_5_vs_5" in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


# --- episodes: on the STAND-IN for smacv2 (stepping a battle needs StarCraft II) --------------------
def stop_everyone(env):
    return np.ones(env.n_agents, dtype=int)  # SMAC's stop action


def test_smacv2s_own_time_limit_becomes_a_time_out(standin, monkeypatch):
    monkeypatch.setattr(standin, "EPISODE_LIMIT", 5)
    env = make_sc2v2(map_name="protoss_5_vs_5", seed=1)
    assert env.episode_limit == 5
    env.reset()
    steps = [env.step(stop_everyone(env)) for _ in range(5)]
    assert all(not terminated and not truncated for _, _, terminated, truncated, _ in steps[:-1])
    _, _, terminated, truncated, info = steps[-1]
    assert truncated and not terminated and info["episode_limit"] is True  # smacv2 said terminated
    assert env.get_stats()["timeouts"] == 1


def test_a_won_battle_is_a_terminal_with_battle_won(standin, monkeypatch):
    monkeypatch.setattr(standin, "ALLY_DAMAGE", 1000.0)  # every shot kills
    env = make_sc2v2(map_name="zerg_5_vs_5", seed=2)
    env.reset()
    for _ in range(env.episode_limit):
        avail = env.get_avail_actions()
        attacks = avail[:, 6:]
        actions = np.where(attacks.any(axis=1), 6 + attacks.argmax(axis=1), np.where(avail[:, 1] == 1, 1, 0))
        _, reward, terminated, truncated, info = env.step(actions)
        if terminated or truncated:
            break
    assert terminated and info["battle_won"] is True and "episode_limit" not in info
    assert env.get_stats()["battles_won"] == 1


def test_qmix_runs_on_the_standin_with_overrides_and_seeds_in_every_worker(tmp_path):
    record = tmp_path / "created.jsonl"
    overrides = [*TINY, "t_max=200", "runner=parallel", "batch_size_run=2", "env_args.map_name=zerg_5_vs_5",
                 "env_args.capability_config.n_units=3", "env_args.time_limit=20"]
    env = {**os.environ, **standin_env_vars(tmp_path), "SMACV2_STANDIN_RECORD": str(record)}
    result = subprocess.run(main_command("qmix", "sc2v2", tmp_path, overrides), capture_output=True, text=True,
                            cwd=str(tmp_path), timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    created = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(kwargs["seed"] for kwargs in created) == [7, 8]  # the run's seed + worker index
    assert all(kwargs["capability_config"]["n_units"] == 3 and kwargs["map_name"] == "10gen_zerg"
               for kwargs in created)
    (run,) = sacred_runs(tmp_path, "qmix")
    metrics = read_json(run, "metrics.json")
    assert "battle_won_mean" in metrics and "test_battle_won_mean" in metrics
    assert all(value <= 20 for _, value in metric(metrics, "ep_length_mean"))
