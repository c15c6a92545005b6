"""Helpers for end-to-end tests that run the real entry point (`src/main.py`)."""
import glob
import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_ROOT, "src", "main.py")
# Upstream EPyMARL, unmodified, beside the repository (absent on a user's machine: tests skip).
UPSTREAM_EPYMARL = os.path.join(os.path.dirname(REPO_ROOT), "shared", "epymarl")

# Tiny budgets: enough episodes for several learner updates, tests and log lines.
TINY = ["t_max=600", "test_interval=200", "test_nepisode=2", "log_interval=200", "runner_log_interval=200",
        "learner_log_interval=200", "batch_size=4", "buffer_size=64", "seed=7"]


def main_command(alg, env, results, overrides=()):
    return [sys.executable, MAIN, f"--config={alg}", f"--env-config={env}", "with",
            f"local_results_path={results}", *overrides]


def without_package(command, package):
    """``command`` (``python src/main.py ...``) run in a Python where ``import package`` fails, whether
    or not the package is installed."""
    python, script, *args = command
    bootstrap = (f"import runpy, sys; sys.modules[{package!r}] = None; "
                 f"sys.argv = {[script, *args]!r}; runpy.run_path({script!r}, run_name='__main__')")
    return [python, "-c", bootstrap]


def run_main(alg, env, results, overrides=(), timeout=600):
    """Run the entry point in a subprocess; return the CompletedProcess."""
    return subprocess.run(main_command(alg, env, results, overrides), capture_output=True, text=True,
                          cwd=str(results), timeout=timeout)


def sacred_runs(results, alg):
    """The Sacred run folders of `alg` under `results`, oldest first."""
    folders = [p for p in glob.glob(os.path.join(str(results), "sacred", alg, "*", "*")) if os.path.basename(p).isdigit()]
    return sorted(folders, key=lambda p: int(os.path.basename(p)))


def read_json(folder, name):
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def metric(metrics, key):
    """A Sacred metric as a list of (step, value)."""
    return list(zip(metrics[key]["steps"], metrics[key]["values"]))


def models_dir(results):
    tokens = glob.glob(os.path.join(str(results), "models", "*"))
    assert len(tokens) == 1, tokens
    return tokens[0]
