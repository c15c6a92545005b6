"""Read Sacred run folders: ours and upstream EPyMARL's share `sacred/<alg>/<env>/<id>/` holding
`config.json`, `run.json` and `metrics.json`.

A run folder that lacks one of them, holds unreadable JSON, or has not logged a test return yet is
skipped with a `SkippedRunWarning`. Runs of unfinished work count as they stand (partial results).
Runs are grouped by the folder names `<alg>` and `<env>`, except a comparison grid's runs
(`cells/<alg>__<env>__seed<seed>/sacred/...`): those by the grid's env name. Within one
`sacred/<alg>/<env>/` folder, a run is superseded by a later run of the same seed that
resumed it (`resume=True`, which replays the earlier metrics) or that restarted it after it failed
or was interrupted; a resumed run's wall time includes its earlier attempts (and so the steps they
redid after their last checkpoint); its env steps are the highest step any of its metrics logged.
Runs that remain with one seed (e.g. a finished run started again) all count, with a
`RepeatedSeedWarning` naming them.

A folder without Sacred runs under it but holding an earlier report's `runs.csv` (its run
folders moved or deleted, the report kept, e.g. under `docs/results/`) is read from that file: each
row a run with its final / best / AUC as the report computed them, and no learning curve.
"""
import csv
import dataclasses
import datetime
import glob
import json
import os
import re
import warnings

import numpy as np

from comparison.cells import last_logged_step

TEST_METRICS = ("test_return_mean", "test_total_return_mean")
# A comparison grid's cell folder: its runs are grouped under the grid's env name.
CELL_FOLDER = re.compile(r"[\\/]cells[\\/][^\\/]+__([^\\/]+)__seed-?\d+[\\/]sacred[\\/]")


class SkippedRunWarning(UserWarning):
    """A run folder the report could not use; the message says which and why."""


class RepeatedSeedWarning(UserWarning):
    """Two kept runs of one algorithm on one env share a seed (e.g. a finished run started again):
    both count as seeds; the message names them."""


@dataclasses.dataclass
class Run:
    path: str
    alg: str
    env: str
    run_id: int
    seed: int
    status: str
    resumed: bool
    t_max: int
    steps: np.ndarray    # [E] env steps of the test evaluations
    returns: np.ndarray  # [E] test return at those steps
    wall_s: float
    env_steps: int       # the highest env step any metric of the run logged
    scores: dict = None  # final / best / auc of a run read from a report's runs.csv (steps, returns: its last test only)

    @property
    def sacred_dir(self):
        return os.path.dirname(self.path)


def _read_json(folder, name):
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def _seconds(run_info):
    end = run_info.get("stop_time") or run_info.get("heartbeat")
    if not run_info.get("start_time") or not end:
        return float("nan")
    start = datetime.datetime.fromisoformat(run_info["start_time"])
    return (datetime.datetime.fromisoformat(end) - start).total_seconds()


def read_run(path, metric=None):
    """A Run, or None with a SkippedRunWarning saying why."""
    try:
        config = _read_json(path, "config.json")
        run_info = _read_json(path, "run.json")
        metrics = _read_json(path, "metrics.json")
    except (OSError, ValueError) as err:
        warnings.warn(f"skipped {path}: {type(err).__name__}: {err}", SkippedRunWarning, stacklevel=2)
        return None
    names = [metric] if metric else TEST_METRICS
    name = next((n for n in names if n in metrics and metrics[n].get("steps")), None)
    if name is None:
        warnings.warn(f"skipped {path}: no {' or '.join(names)} logged yet", SkippedRunWarning, stacklevel=2)
        return None
    env_dir = os.path.dirname(path)
    cell = CELL_FOLDER.search(path)
    return Run(path=path, alg=os.path.basename(os.path.dirname(env_dir)),
               env=cell.group(1) if cell else os.path.basename(env_dir),
               run_id=int(os.path.basename(path)), seed=config.get("seed"), status=run_info.get("status", "UNKNOWN"),
               resumed=bool(config.get("resume")), t_max=config.get("t_max"),
               steps=np.asarray(metrics[name]["steps"], dtype=float),
               returns=np.asarray(metrics[name]["values"], dtype=float), wall_s=_seconds(run_info),
               env_steps=int(last_logged_step(metrics)))


def run_folders(root):
    """Every `sacred/<alg>/<env>/<id>` folder under `root` (or `root` being a `sacred` folder)."""
    patterns = [os.path.join(root, "**", "sacred", "*", "*", "*")]
    if os.path.basename(os.path.normpath(root)) == "sacred":
        patterns.append(os.path.join(root, "*", "*", "*"))
    found = {path for pattern in patterns for path in glob.glob(pattern, recursive=True)}
    return sorted(path for path in found if os.path.basename(path).isdigit() and os.path.isdir(path))


def _superseded(earlier, later):
    return later.resumed or earlier.status != "COMPLETED"


REPORT_RUNS = "runs.csv"


def read_report_runs(folder):
    """The runs an earlier report listed in `folder`/runs.csv (report.run_records' columns)."""
    path = os.path.join(folder, REPORT_RUNS)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    runs = []
    for row in rows:
        try:
            scores = {name: float(row[name]) for name in ("final", "best", "auc")}
            runs.append(Run(path=row["path"], alg=row["alg"], env=row["env"], run_id=-1, seed=int(row["seed"]),
                            status=row["status"], resumed=False, t_max=int(row["t_max"]),
                            steps=np.array([float(row["steps_reached"])]), returns=np.array([scores["final"]]),
                            wall_s=float(row["wall_s"]), env_steps=int(row["env_steps"]), scores=scores))
        except (KeyError, ValueError) as err:
            warnings.warn(f"skipped a row of {path} ({type(err).__name__}: {err}): {row}", SkippedRunWarning,
                          stacklevel=2)
    return runs


def load_runs(roots, metric=None):
    """The usable runs under every root, superseded ones dropped; a root without Sacred runs is read
    from its report's runs.csv, if it has one."""
    folders = {root: run_folders(root) for root in roots}
    runs = [run for root in roots for path in folders[root] for run in [read_run(path, metric)] if run]
    lineages = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        lineages.setdefault((run.sacred_dir, run.seed), []).append(run)
    kept = []
    for seed_runs in lineages.values():
        for earlier, later in zip(seed_runs, seed_runs[1:]):
            if later.resumed and not np.isnan(earlier.wall_s):
                later.wall_s += earlier.wall_s
        kept += [run for run, later in zip(seed_runs, seed_runs[1:]) if not _superseded(run, later)]
        kept.append(seed_runs[-1])
    kept += [run for root in roots if not folders[root] and os.path.isfile(os.path.join(root, REPORT_RUNS))
             for run in read_report_runs(root)]
    by_seed = {}
    for run in kept:
        by_seed.setdefault((run.alg, run.env, run.seed), []).append(run.path)
    for (alg, env, seed), paths in by_seed.items():
        if len(paths) > 1:
            warnings.warn(f"seed {seed} of {alg} on {env} is in {len(paths)} runs, each counted as a seed: "
                          f"{', '.join(paths)}; move away the ones not to compare", RepeatedSeedWarning,
                          stacklevel=2)
    return kept
