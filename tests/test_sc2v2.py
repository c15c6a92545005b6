"""sc2v2 (SMACv2): scenario files, command-line overrides, start-up errors, and the wrapper's logic.

StarCraft II and smacv2 cannot be installed here, so the wrapper runs on a STAND-IN for smacv2
(tests/smacv2_standin) that follows smacv2's documented API with a toy battle. These tests check
our side of the interface, not the game.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from envs import REGISTRY as env_REGISTRY
from envs.sc2v2 import load_scenario, scenario_names
from helpers import TINY, main_command, metric, read_json, sacred_runs
from smacv2_standin import install_fake_game, standin_env_vars, use_smacv2_standin
from run_config import CONFIG_DIR, ConfigError, build_config

RACE_UNITS = {"protoss": ["stalker", "zealot", "colossus"], "terran": ["marine", "marauder", "medivac"],
              "zerg": ["zergling", "baneling", "hydralisk"]}


def make_sc2v2(**env_args):
    return env_REGISTRY["sc2v2"](**env_args, common_reward=True, reward_scalarisation="sum")


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """The stand-in's ``smacv2.env`` module (its ``CREATED`` lists every env's keyword arguments)."""
    use_smacv2_standin(monkeypatch, tmp_path)
    import smacv2.env

    return smacv2.env


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


def test_overrides_and_the_seed_reach_smacv2(standin):
    env = make_sc2v2(map_name="zerg_10_vs_11", seed=5, reward_sparse=True,
                     capability_config={"n_units": 4, "n_enemies": None, "team_gen": {"weights": [0.5, 0.0, 0.5]},
                                        "enemy_mask": {"dist_type": None, "mask_probability": None}})
    kwargs = standin.CREATED[-1]
    assert kwargs["map_name"] == "10gen_zerg" and kwargs["seed"] == 5 and kwargs["reward_sparse"] is True
    capabilities = kwargs["capability_config"]
    assert (capabilities["n_units"], capabilities["n_enemies"]) == (4, 11)  # None keeps the scenario's value
    assert capabilities["team_gen"]["weights"] == [0.5, 0.0, 0.5]
    assert capabilities["team_gen"]["unit_types"] == RACE_UNITS["zerg"]
    assert "enemy_mask" not in capabilities  # an all-None dict adds nothing
    assert kwargs["reward_win"] == 200 and kwargs["difficulty"] == "7"
    assert env.get_env_info()["n_agents"] == 4 and env.n_enemies == 11
    assert load_scenario("zerg_10_vs_11")["capability_config"]["n_units"] == 10  # the file is untouched


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


# --- start-up errors ------------------------------------------------------------------------------
def test_missing_smacv2_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "smacv2", None)
    monkeypatch.setitem(sys.modules, "smacv2.env", None)
    with pytest.raises(ImportError, match="pip install git\\+https://github.com/oxwhirl/smacv2.git"):
        make_sc2v2(map_name="protoss_5_vs_5", seed=0)


def test_missing_game_or_maps_say_what_to_install(monkeypatch, tmp_path):
    use_smacv2_standin(monkeypatch, tmp_path)
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
    result = subprocess.run(main_command("qmix", "sc2v2", tmp_path, TINY), capture_output=True, text=True,
                            cwd=str(tmp_path), timeout=300, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 2
    assert "env sc2v2 needs the smacv2 package" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "sacred")   # stopped before Sacred or any env started


def test_an_unknown_map_name_stops_the_run_at_start_up(tmp_path):
    result = subprocess.run(main_command("qmix", "sc2v2", tmp_path, [*TINY, "env_args.map_name=protoss_5v5"]),
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 2 and "'protoss_5v5'" in result.stderr and "protoss_5_vs_5" in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


# --- episodes -------------------------------------------------------------------------------------
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
