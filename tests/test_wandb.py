"""Weights & Biases logging (``use_wandb``), run for real through the entry point in offline mode
(there is no network here); the runs are read back from W&B's own ``.wandb`` files."""
import glob
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess

import pytest

from helpers import TINY, main_command, metric, models_dir, read_json, sacred_runs, without_package
from checkpoint import model_files
from main import main

from utils.wandb_sink import WandbSink, wandb_run_id

needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason="wandb is not installed (pip install -e .[wandb])")

LBF = ["env_args.key=lbforaging:Foraging-5x5-2p-1f-v3", "epsilon_anneal_time=500"]
WANDB = ["use_wandb=True", "wandb_mode=offline", "save_model=True", "save_model_interval=250",
         "wandb_save_model=True"]


def wandb_environment(home):
    """The process environment with W&B's settings, caches and staging under ``home``, no error reports."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    return {**environment, "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_CACHE_DIR": str(home / "cache"),
            "WANDB_DATA_DIR": str(home / "data"), "WANDB_ERROR_REPORTING": "false"}


def run_with_wandb(results, overrides):
    result = subprocess.run(main_command("qmix", "lbf", results, [*TINY, *LBF, *WANDB, *overrides]),
                            capture_output=True, text=True, cwd=str(results), timeout=600,
                            env=wandb_environment(results))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_wandb_run(run_dir):
    """What a ``.wandb`` file holds: the run's id, name, group and config, its history rows
    (``{key: value, "_step": t}``) and its artifacts (name, aliases, files)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    store = DataStore()
    store.open_for_scan(path)
    run = {"config": {}, "history": [], "artifacts": []}
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, name=record.run.display_name, group=record.run.run_group)
            run["config"].update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            run["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                   for item in record.history.item})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
        elif kind == "artifact":
            run["artifacts"].append({"name": record.artifact.name, "aliases": set(record.artifact.aliases),
                                     "files": {entry.path for entry in record.artifact.manifest.contents}})
    return run


def offline_runs(results):
    """The offline W&B runs under ``results``, oldest first."""
    folders = sorted(glob.glob(os.path.join(str(results), "wandb", "offline-run-*")))
    return [read_wandb_run(folder) for folder in folders]


def wandb_series(run, key):
    """A stat's history in a W&B run as a list of (step, value)."""
    return [(row["_step"], row[key]) for row in run["history"] if key in row]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    results = tmp_path_factory.mktemp("wandb_run")
    run_with_wandb(results, [])
    return results


@needs_wandb
def test_every_stat_goes_to_wandb_at_its_env_step(trained):
    (run,) = offline_runs(trained)
    (sacred_run,) = sacred_runs(trained, "qmix")
    metrics = read_json(sacred_run, "metrics.json")
    assert {"test_return_mean", "return_mean", "loss", "epsilon"} <= set(metrics)
    for key in metrics:  # training, test, learner and env stats alike
        steps, values = zip(*wandb_series(run, key))
        sacred_steps, sacred_values = zip(*metric(metrics, key))
        assert steps == sacred_steps and values == pytest.approx(sacred_values), key
    test_steps = [step for step, _ in wandb_series(run, "test_return_mean")]
    assert len(test_steps) >= 3  # a test every test_interval=200 steps
    assert all(later - earlier >= 200 for earlier, later in zip(test_steps, test_steps[1:]))


@needs_wandb
def test_the_wandb_run_is_named_grouped_and_configured_by_the_run(trained):
    (run,) = offline_runs(trained)
    token = os.path.basename(models_dir(trained))
    assert (run["id"], run["name"], run["group"]) == (wandb_run_id(token), token, "qmix_Foraging-5x5-2p-1f-v3")
    config = run["config"]
    assert (config["name"], config["seed"], config["t_max"], config["use_wandb"]) == ("qmix", 7, 600, True)
    assert config["env_args"]["key"] == "lbforaging:Foraging-5x5-2p-1f-v3"
    assert config["mixer"] == "qmix" and config["save_model_interval"] == 250
    assert run["exit_code"] == 0  # a run that ended normally


@needs_wandb
def test_a_failed_run_closes_its_wandb_run_with_the_exit_code(tmp_path, monkeypatch):
    for key, value in wandb_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    config = {"wandb_save_model": False, "save_model": False, "wandb_mode": "offline",
              "wandb_team": None, "wandb_project": None, "name": "qmix"}
    sink = WandbSink(config, "qmix_seed1_failing", "qmix_lbf", str(tmp_path), logging.getLogger("test"))
    sink.log("loss", 1.5, 10)
    sink.close(exit_code=1)
    (run,) = offline_runs(tmp_path)
    assert run["exit_code"] == 1 and wandb_series(run, "loss") == [(10, 1.5)]


@needs_wandb
def test_every_checkpoint_is_uploaded_as_an_artifact(trained):
    (run,) = offline_runs(trained)
    checkpoints = sorted(os.listdir(models_dir(trained)), key=int)
    assert len(checkpoints) >= 2
    assert [artifact["aliases"] - {"latest"} for artifact in run["artifacts"]] == [
        {f"t_env_{step}"} for step in checkpoints]
    for artifact, step in zip(run["artifacts"], checkpoints):
        assert artifact["files"] == set(model_files(os.path.join(models_dir(trained), step))) != set()


@needs_wandb
def test_a_resumed_run_continues_the_same_wandb_run(trained, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(trained, results)
    token_dir = models_dir(results)
    last_step = sorted(os.listdir(token_dir), key=int)[-1]  # only the newest keeps the full state
    result = run_with_wandb(results, ["resume=True", f"checkpoint_path={token_dir}", "t_max=1200"])
    assert "Resumed at t_env=" in result.stderr

    first, resumed = offline_runs(results)
    assert resumed["id"] == first["id"] == wandb_run_id(os.path.basename(token_dir))
    resumed_steps = [step for step, _ in wandb_series(resumed, "test_return_mean")]
    assert resumed_steps and min(resumed_steps) > int(last_step)  # only what came after the checkpoint
    assert min(row["_step"] for row in resumed["history"]) > int(last_step)


def test_use_wandb_without_wandb_stops_at_start_up_with_the_install_command(tmp_path):
    command = without_package(main_command("qmix", "lbf", tmp_path, [*TINY, "use_wandb=True"]), "wandb")
    result = subprocess.run(command, capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "use_wandb=True needs the wandb package" in result.stderr and "pip install -e .[wandb]" in result.stderr
    assert os.listdir(tmp_path) == []  # stopped before Sacred or W&B started


@needs_wandb
def test_an_unknown_wandb_mode_stops_at_start_up(tmp_path, capsys):
    code = main(["--config=qmix", "--env-config=lbf", "with", f"local_results_path={tmp_path}", "use_wandb=True",
                 "wandb_mode=cloud"])
    assert code == 2
    assert "wandb_mode must be one of online, offline, disabled, got 'cloud'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@needs_wandb
def test_online_without_a_reachable_server_goes_on_offline(tmp_path, monkeypatch, caplog):
    with socket.socket() as unused:  # a local port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    for key, value in wandb_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    config = {"wandb_mode": "online", "wandb_team": None, "wandb_project": None, "wandb_save_model": False,
              "save_model": False, "seed": 3}
    sink = WandbSink(config, "qmix_seed3_token", "qmix_env", str(tmp_path), logging.getLogger("test_wandb"))
    sink.log("test_return_mean", 1.5, 10)
    sink.close()
    assert "cannot be reached" in caplog.text and "wandb sync" in caplog.text
    (run,) = offline_runs(tmp_path)
    assert run["id"] == wandb_run_id("qmix_seed3_token") and wandb_series(run, "test_return_mean") == [(10, 1.5)]
