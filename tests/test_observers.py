"""Sacred observers: a real MongoDB-compatible server (SecantusDB, started by the `mongo_url`
fixture in conftest.py) read back with pymongo, and an unreachable server."""
import gridfs
import pymongo

from helpers import TINY, metric, read_json, run_main, sacred_runs

LBF = ["env_args.key=lbforaging:Foraging-5x5-2p-1f-v3", "t_max=300"]


def test_mongo_observer_records_run_config_metrics_and_artifacts(tmp_path, mongo_url):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, f"mongo_url={mongo_url}", "mongo_db_name=e2e",
                                                "save_model=True"])
    assert result.returncode == 0, result.stderr[-3000:]

    db = pymongo.MongoClient(mongo_url)["e2e"]
    (run,) = list(db["runs"].find())
    assert run["status"] == "COMPLETED"
    assert run["config"]["name"] == "qmix" and run["config"]["seed"] == 7
    assert run["config"]["env_args"]["key"] == "lbforaging:Foraging-5x5-2p-1f-v3"
    names = {doc["name"] for doc in db["metrics"].find({"run_id": run["_id"]})}
    assert {"return_mean", "test_return_mean", "loss"} <= names

    # The file observer recorded the same run, metric for metric.
    (folder,) = sacred_runs(tmp_path, "qmix")
    file_returns = [v for _, v in metric(read_json(folder, "metrics.json"), "return_mean")]
    assert db["metrics"].find_one({"run_id": run["_id"], "name": "return_mean"})["values"] == file_returns

    # The final checkpoint's models are artifacts in GridFS, byte for byte; the replay buffer is not.
    token = run["info"]["unique_token"]
    step = max(int(p.name) for p in (tmp_path / "models" / token).iterdir())
    artifacts = {artifact["name"]: artifact["file_id"] for artifact in run["artifacts"]}
    assert f"checkpoint_{step}_agent.th" in artifacts and f"checkpoint_{step}_mixer.th" in artifacts
    assert f"checkpoint_{step}_buffer.th" not in artifacts
    stored = gridfs.GridFS(db).get(artifacts[f"checkpoint_{step}_agent.th"]).read()
    assert stored == (tmp_path / "models" / token / str(step) / "agent.th").read_bytes()


def test_fresh_database_after_file_only_runs_gets_its_own_file_folder(tmp_path, mongo_url):
    # A files-only run holds folder 1; a fresh database then numbers its first run 1 too.
    assert run_main("qmix", "lbf", tmp_path, [*TINY, *LBF]).returncode == 0
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, f"mongo_url={mongo_url}", "mongo_db_name=fresh"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FileExistsError" not in result.stderr

    (run,) = list(pymongo.MongoClient(mongo_url)["fresh"]["runs"].find())
    assert run["_id"] == 1 and run["status"] == "COMPLETED"
    folders = sacred_runs(tmp_path, "qmix")
    assert [int(f.rsplit("/", 1)[-1]) for f in folders] == [1, 2]
    assert read_json(folders[-1], "run.json")["status"] == "COMPLETED"
    assert read_json(folders[-1], "config.json")["mongo_db_name"] == "fresh"


def test_unreachable_mongo_warns_and_runs_on_files(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, "mongo_url=mongodb://127.0.0.1:9",
                                                "mongo_timeout_ms=300"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MongoDB at mongodb://127.0.0.1:9 is unreachable" in result.stderr
    assert "recorded in files only" in result.stderr
    (folder,) = sacred_runs(tmp_path, "qmix")
    assert read_json(folder, "run.json")["status"] == "COMPLETED"
    assert "return_mean" in read_json(folder, "metrics.json")
