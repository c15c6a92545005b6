"""Shared test setup: put ``src/`` on the path (EPyMARL-style imports) and use one torch thread."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO_ROOT, "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import torch  # noqa: E402

torch.set_num_threads(1)


import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mongo_url(tmp_path_factory):
    """A real MongoDB-compatible server (SecantusDB, in memory) on a free port, for one test module.

    SecantusDB is a test-only dependency (requirements.txt, the `test` extra).
    """
    import pymongo

    server = shutil.which("secantusd-py", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    assert server, "secantusd-py not found: pip install secantusdb==0.7.0b3 (a test dependency in requirements.txt)"
    port = _free_port()
    log = tmp_path_factory.mktemp("secantusdb") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen([server, "--storage-path", ":memory:", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"mongodb://127.0.0.1:{port}"
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=500)
    try:
        for _ in range(60):
            try:
                client.admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                assert process.poll() is None, f"secantusd-py exited: {log.read_text()}"
                time.sleep(0.5)
        else:
            raise AssertionError(f"secantusd-py did not answer on port {port}: {log.read_text()}")
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pytest.ini): one worker per core, at most 8.

    Each worker is a process with one torch thread, and many tests start subprocesses of their own (training
    runs, comparison workers, servers), so more workers than cores only adds contention.
    """
    return max(1, min(os.cpu_count() or 1, 8))
