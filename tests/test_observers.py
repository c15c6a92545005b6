"""Sacred observers: MongoDB wiring (via mongomock) and an unreachable server.

There is no MongoDB server on these machines and none can be installed (see the shared
environments notes), so the MongoDB observer is exercised against mongomock, an in-memory stand-in
that implements pymongo's client API. Everything else here is real: the entry point, Sacred's
MongoObserver, LBF and the training loop.
"""
import mongomock
import mongomock.gridfs
import pymongo

from helpers import TINY, metric, read_json, run_main, sacred_runs

LBF = ["env_args.key=lbforaging:Foraging-5x5-2p-1f-v3", "t_max=300"]


def test_mongo_observer_records_run_config_and_metrics(tmp_path, monkeypatch):
    mongomock.gridfs.enable_gridfs_integration()
    server = mongomock.MongoClient()
    monkeypatch.setattr(pymongo, "MongoClient", lambda *args, **kwargs: server)   # the stand-in server

    import main
    code = main.main(["--config=qmix", "--env-config=lbf", "with", f"local_results_path={tmp_path}",
                      *TINY, *LBF, "mongo_url=mongodb://localhost:27017", "mongo_db_name=omniboard_test"])
    assert code == 0

    db = server["omniboard_test"]
    (run,) = list(db["runs"].find())
    assert run["status"] == "COMPLETED"
    assert run["config"]["name"] == "qmix" and run["config"]["seed"] == 7
    names = {doc["name"] for doc in db["metrics"].find({"run_id": run["_id"]})}
    assert {"return_mean", "test_return_mean", "loss"} <= names
    # The file observer still records the same run.
    (folder,) = sacred_runs(tmp_path, "qmix")
    file_metrics = read_json(folder, "metrics.json")
    mongo_returns = db["metrics"].find_one({"run_id": run["_id"], "name": "return_mean"})
    assert mongo_returns["values"] == [v for _, v in metric(file_metrics, "return_mean")]


def test_unreachable_mongo_warns_and_runs_on_files(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, "mongo_url=mongodb://127.0.0.1:9",
                                                "mongo_timeout_ms=300"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MongoDB at mongodb://127.0.0.1:9 is unreachable" in result.stderr
    assert "recorded in files only" in result.stderr
    (folder,) = sacred_runs(tmp_path, "qmix")
    assert read_json(folder, "run.json")["status"] == "COMPLETED"
    assert "return_mean" in read_json(folder, "metrics.json")

