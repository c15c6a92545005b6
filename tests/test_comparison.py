"""src/compare.py and src/comparison/: reports on Sacred folders with known numbers, and grids of
tiny real runs (src/main.py on the matrix game) through the process pool and a local Ray instance."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import pytest
import scipy.stats
from rliable import library, metrics

import compare
from checkpoint import checkpoint_steps
from comparison import cells
from comparison.report import write_report
from comparison.runs import RepeatedSeedWarning, SkippedRunWarning, load_runs
from helpers import REPO_ROOT, UPSTREAM_EPYMARL

REPS = 300
# The Ray tests run one after another on one pytest-xdist worker: each starts Ray instances sized to the machine.
RAY_GROUP = pytest.mark.xdist_group("ray")


def write_run(root, alg, env, run_id, seed, steps, returns, status="COMPLETED", resume=False, t_max=None,
              last_step=None, minutes=30):
    """A Sacred run folder as the file observer writes it (ours and upstream EPyMARL's alike), the
    run lasting `minutes` (< 60); with `last_step`, a training metric logged after the last test, at
    that env step."""
    folder = os.path.join(str(root), "sacred", alg, env, str(run_id))
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"name": alg, "seed": seed, "resume": resume, "t_max": t_max or steps[-1]}, f)
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"status": status, "start_time": "2026-11-29T10:00:00.000000",
                   "stop_time": f"2026-11-29T10:{minutes:02d}:00.000000"}, f)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        metrics = {"test_return_mean": {"steps": list(steps), "values": list(returns),
                                        "timestamps": ["2026-11-29T10:00:00"] * len(steps)}}
        if last_step is not None:
            metrics["episode"] = {"steps": [last_step], "values": [1], "timestamps": ["2026-11-29T10:29:00"]}
        json.dump(metrics, f)
    return folder


STEPS = [0, 1000, 2000, 3000, 4000]
FINALS = {  # env -> alg -> final test return of seeds 1..5
    "task_a": {"good": [1.0, 2.0, 3.0, 4.0, 100.0], "poor": [0.0, 0.1, 0.2, 0.3, 0.4]},
    "task_b": {"good": [5.0, 6.0, 7.0, 8.0, 9.0], "poor": [1.0, 1.5, 2.0, 2.5, 3.0]},
}


@pytest.fixture
def results(tmp_path):
    """Two algorithms x two tasks x five seeds; each curve rises linearly to its final return."""
    run_id = 0
    for env, by_alg in FINALS.items():
        for alg, finals in by_alg.items():
            for seed, final in enumerate(finals, start=1):
                run_id += 1
                write_run(tmp_path / "results", alg, env, run_id, seed, STEPS, np.linspace(0, final, len(STEPS)))
    return tmp_path / "results"


def test_report_statistics_are_rliables_on_the_same_data(results, tmp_path):
    written = write_report("known", [str(results)], str(tmp_path / "out"), reps=REPS, seed=3)
    rows = {(row["env"], row["alg"]): row for row in written["rows"]}
    finals = np.array(FINALS["task_a"]["good"])[:, None]
    point, low, high = rows[("task_a", "good")]["estimates"]["final"]["iqm"]
    assert point == pytest.approx(3.0)   # the middle half of 1, 2, 3, 4, 100
    assert point == pytest.approx(scipy.stats.trim_mean(finals, 0.25, axis=None))
    np.random.seed(3)   # rliable's stratified bootstrap draws from NumPy's global generator
    _, rliable_intervals = library.get_interval_estimates(
        {"good": finals}, lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]),
        reps=REPS, random_state=np.random.RandomState(3))
    assert (low, high) == pytest.approx(tuple(rliable_intervals["good"][:, 0]))
    assert rows[("task_a", "good")]["estimates"]["final"]["mean"][0] == pytest.approx(22.0)
    # AUC of a straight line from 0 to its final value: the mean of the line, final / 2.
    assert rows[("task_b", "poor")]["estimates"]["auc"]["mean"][0] == pytest.approx(np.mean([1, 1.5, 2, 2.5, 3]) / 2)
    assert rows[("task_b", "poor")]["seeds"] == 5 and rows[("task_b", "poor")]["budget"] == [4000]

    # Across tasks: "good" beats "poor" on every seed of both tasks.
    across = written["across"]
    assert across["improvement"][("good", "poor")][0] == pytest.approx(1.0)
    assert across["improvement"][("poor", "good")][0] == pytest.approx(0.0)
    table = open(written["paths"]["table"]).read()
    assert "task_a,good,5,4000" in table
    across_csv = open(written["paths"]["across"]).read().splitlines()
    assert across_csv[0] == "measure,alg,over,runs_per_env,estimate,low,high"
    assert "p_improvement,good,poor,5,1.0,1.0,1.0" in across_csv
    assert sum(line.startswith("normalised_final_iqm,") for line in across_csv) == 2
    markdown = open(written["paths"]["markdown"]).read()
    assert "| task_a | good | 5 | 4,000 | 4,000 | 3.000 [" in markdown and "good over poor | 1.00 |" in markdown


def test_learning_curves_have_one_line_per_algorithm_over_the_shared_steps(results, tmp_path):
    # A third algorithm on task_a whose runs stop early (partial results): its line ends there.
    for seed in (1, 2):
        write_run(results, "early", "task_a", 100 + seed, seed, [500, 1000, 1500, 2500], [0.0, 1.0, 2.0, 3.0],
                  status="RUNNING", t_max=4000)
    written = write_report("curves", [str(results)], str(tmp_path / "out"), reps=REPS)
    axes = {ax.get_title(): ax for ax in written["figures"]["curves"].axes}
    assert sorted(axes) == ["task_a", "task_b"]
    lines = {line.get_label().split(" ")[0]: line for line in axes["task_a"].get_lines()}
    assert sorted(lines) == ["early", "good", "poor"]
    assert len(axes["task_b"].get_lines()) == 2
    x, y = lines["good"].get_data()
    assert (x[0], x[-1]) == (0, 4000)
    assert y[-1] == pytest.approx(3.0) and y[0] == pytest.approx(0.0)   # the IQM of the seeds' curves
    assert axes["task_a"].xaxis.get_major_formatter()(400000) == "400k"   # no overlapping 6-digit labels
    x, y = lines["early"].get_data()
    assert (x[0], x[-1]) == (500, 2500)
    assert os.path.getsize(written["paths"]["curves"]) > 0 and os.path.getsize(written["paths"]["aggregates"]) > 0


def test_missing_half_written_and_superseded_runs(results, tmp_path):
    half = write_run(results, "good", "task_a", 200, 6, STEPS, [9.0] * 5)
    with open(os.path.join(half, "metrics.json"), "w") as f:
        f.write('{"test_return_mean": {"steps": [0, 1000')          # being written
    missing = write_run(results, "good", "task_a", 201, 7, STEPS, [9.0] * 5)
    os.remove(os.path.join(missing, "config.json"))
    # Seed 1 of "poor" on task_b was interrupted, then resumed: only the resumed run counts.
    shutil.rmtree(results / "sacred" / "poor" / "task_b" / "16")   # the fixture's seed 1 run
    write_run(results, "poor", "task_b", 202, 1, STEPS[:2], [50.0, 50.0], status="INTERRUPTED")
    write_run(results, "poor", "task_b", 203, 1, STEPS, [0, 1, 2, 3, 7.0], resume=True, last_step=5000)

    with pytest.warns(SkippedRunWarning) as caught:
        runs = load_runs([str(results)])
    messages = " ".join(str(w.message) for w in caught)
    assert half in messages and missing in messages
    good_a = sorted(run.seed for run in runs if (run.alg, run.env) == ("good", "task_a"))
    assert good_a == [1, 2, 3, 4, 5]
    poor_b = {run.seed: run for run in runs if (run.alg, run.env) == ("poor", "task_b")}
    assert len(poor_b) == 5 and poor_b[1].returns[-1] == 7.0 and poor_b[1].run_id == 203
    assert poor_b[1].wall_s == 2 * 1800 and poor_b[2].wall_s == 1800   # both attempts' time
    assert poor_b[1].env_steps == 5000 and poor_b[2].env_steps == 4000  # the highest step logged

    # A run still going counts as it stands, and the report says so.
    write_run(results, "poor", "task_b", 204, 6, STEPS[:3], [0, 1, 2.0], status="RUNNING", t_max=4000)
    with pytest.warns(SkippedRunWarning):
        write_report("partial", [str(results)], str(tmp_path / "partial"), reps=REPS)
    with open(tmp_path / "partial" / "report.md") as f:
        text = f.read()
    assert "**1 of 21 runs have not finished**" in text and "poor on task_b seed 6 (RUNNING, last test at 2,000)" in text
    # Wall time per env step pools a group's time and steps, the unfinished run as far as it got:
    # poor on task_b took 2 x 1800 s (seed 1's two attempts) + 5 x 1800 s for 5000 + 4 x 4000 + 2000
    # steps; good on task_b 5 x 1800 s for 5 x 4000 steps.
    poor_per_step, good_per_step = 7 * 1800 / 23000 * 1e6, 1800 / 4000 * 1e6
    assert f"| task_b | poor | 23,000 | {poor_per_step:,.0f} | {poor_per_step / good_per_step:.2f} |" in text
    assert f"| task_b | good | 20,000 | {good_per_step:,.0f} | 1.00 |" in text


def test_a_seed_run_twice_counts_twice_with_a_warning_naming_both_runs(results, tmp_path):
    again = write_run(results, "good", "task_a", 300, 1, STEPS, [0, 0, 0, 0, 50.0])   # seed 1 started again
    with pytest.warns(RepeatedSeedWarning) as caught:
        written = write_report("again", [str(results)], str(tmp_path / "out"), reps=REPS)
    message = str(caught[0].message)
    assert "seed 1 of good on task_a is in 2 runs" in message
    assert again in message and os.path.join("good", "task_a", "1") in message
    rows = {(row["env"], row["alg"]): row for row in written["rows"]}
    assert rows[("task_a", "good")]["seeds"] == 6 and rows[("task_b", "good")]["seeds"] == 5


def test_report_command_over_several_result_roots(results, tmp_path, capsys):
    other = tmp_path / "other_results"
    write_run(other, "third", "task_a", 1, 1, STEPS, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert compare.main(["--report", str(results), str(other)]) == 2
    assert "needs --out DIR or --name NAME" in capsys.readouterr().err
    assert compare.main(["--report", str(results), str(other), "--out", str(tmp_path / "both"), "--reps=100"]) == 0
    with open(tmp_path / "both" / "table.csv") as f:
        groups = {tuple(line.split(",")[:3]) for line in f.read().splitlines()[1:]}
    assert groups == {("task_a", "good", "5"), ("task_a", "poor", "5"), ("task_a", "third", "1"),
                      ("task_b", "good", "5"), ("task_b", "poor", "5")}
    assert "| task_a | third | 1 | 4,000 |" in capsys.readouterr().out

    # An A/B view: one env (where "third" ran), improvements over a baseline only.
    argv = ["--report", str(results), str(other), "--out", str(tmp_path / "ab"), "--reps=100", "--envs", "task_a"]
    assert compare.main([*argv, "--baseline", "poor"]) == 0
    text = open(tmp_path / "ab" / "report.md").read()
    assert "task_b" not in text and "| task_a | third | 1 |" in text
    improvements = [line for line in text.splitlines() if line.startswith("| ") and " over " in line.split("|")[1]]
    assert len(improvements) == 2 and "| good over poor | 1.00 |" in improvements
    assert any(line.startswith("| third over poor | ") for line in improvements)
    capsys.readouterr()
    assert compare.main([*argv, "--baseline", "qmix"]) == 1
    assert "--baseline qmix: not among the algorithms that ran on every reported env (good, poor, third)" \
        in capsys.readouterr().err
    assert compare.main([*argv[:-1], "task_c"]) == 1
    assert "No run of env task_c; the runs' envs: task_a, task_b." in capsys.readouterr().err

    # Algorithms picked out of the roots (a rerun under a new name beside an old grid's runs).
    assert compare.main([*argv, "--algs", "third,poor"]) == 0
    text = open(tmp_path / "ab" / "report.md").read()
    assert "| task_a | third | 1 |" in text and "| task_a | poor | 5 |" in text and "| good |" not in text
    capsys.readouterr()
    assert compare.main([*argv, "--algs", "third,qmix"]) == 1
    assert "No run of alg qmix; the runs' algs: good, poor, third." in capsys.readouterr().err


def test_a_kept_reports_runs_csv_stands_in_for_its_deleted_runs(results, tmp_path, capsys):
    first = write_report("first", [str(results)], str(tmp_path / "kept"), reps=REPS)
    # The report's own folder beside its runs: the Sacred runs are read, not its runs.csv as well.
    write_report("in place", [str(results)], str(results), reps=REPS)
    assert len(load_runs([str(results)])) == 20
    shutil.rmtree(results)   # the run folders are gone; the report (runs.csv) is kept
    other = tmp_path / "new_results"
    write_run(other, "third", "task_a", 1, 1, STEPS, [0.0, 1.0, 2.0, 3.0, 4.0])
    out = tmp_path / "combined"
    assert compare.main(["--report", str(tmp_path / "kept"), str(other), "--out", str(out), f"--reps={REPS}"]) == 0
    again = write_report("combined", [str(tmp_path / "kept"), str(other)], str(out), reps=REPS)
    rows = {(row["env"], row["alg"]): row for row in again["rows"]}
    for row in first["rows"]:   # every seed's final / best / AUC as the first report had them
        key = (row["env"], row["alg"])
        assert rows[key]["estimates"] == row["estimates"] and rows[key]["seeds"] == 5
        assert rows[key]["reached"] == row["reached"] and rows[key]["wall_us_per_step"] == row["wall_us_per_step"]
    assert rows[("task_a", "third")]["estimates"]["final"]["iqm"][0] == pytest.approx(4.0)
    assert again["across"]["improvement"] == first["across"]["improvement"]
    assert again["across"]["aggregates"] == first["across"]["aggregates"]
    # Only the run with a curve is drawn; the markdown says which groups came from a table.
    lines = {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in again["figures"]["curves"].axes}
    assert lines == {"task_a": ["third (1 seeds)"], "task_b": []}
    text = open(out / "report.md").read()
    assert "no learning curve in curves.png): good on task_a, good on task_b, poor on task_a, poor on task_b." in text

    # A damaged row is skipped with a warning naming the file; the other rows count.
    kept_csv = tmp_path / "kept" / "runs.csv"
    rows_text = kept_csv.read_text().splitlines()
    kept_csv.write_text("\n".join([rows_text[0], rows_text[1].replace(",COMPLETED,", ",COMPLETED,n/a,"), *rows_text[2:]]))
    with pytest.warns(SkippedRunWarning, match=f"skipped a row of {kept_csv}"):
        assert len(load_runs([str(tmp_path / "kept")])) == 19


EPYMARL = os.environ.get("EPYMARL_DIR", UPSTREAM_EPYMARL)


@pytest.mark.skipif(not os.path.isdir(os.path.join(EPYMARL, "src")),
                    reason=f"no upstream EPyMARL checkout at {EPYMARL} (set EPYMARL_DIR)")
def test_report_reads_upstream_epymarl_runs(tmp_path):
    # Upstream EPyMARL writes results/ beside its src/, so it runs from a copy.
    shutil.copytree(os.path.join(EPYMARL, "src"), tmp_path / "epymarl" / "src")
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "smaclite.py").write_text(
        '"""Stand-in: upstream EPyMARL imports smaclite at start-up; not installed here, and this run is LBF."""\n')
    command = [sys.executable, str(tmp_path / "epymarl" / "src" / "main.py"), "--config=qmix", "--env-config=gymma",
               "with", "env_args.key=lbforaging:Foraging-5x5-2p-1f-v3", "env_args.time_limit=25", "t_max=400",
               "test_interval=200", "test_nepisode=2", "log_interval=200", "runner_log_interval=200",
               "learner_log_interval=200", "batch_size=4", "buffer_size=16", "use_tensorboard=False", "seed=5"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path / "stub")))
    assert result.returncode == 0, result.stderr[-3000:]

    results = tmp_path / "epymarl" / "results"
    written = write_report("upstream", [str(results)], str(tmp_path / "out"), reps=REPS)
    (row,) = written["rows"]
    assert (row["env"], row["alg"], row["seeds"]) == ("lbforaging:Foraging-5x5-2p-1f-v3", "qmix", 1)
    with open(results / "sacred" / "qmix" / "lbforaging:Foraging-5x5-2p-1f-v3" / "1" / "metrics.json") as f:
        test_returns = json.load(f)["test_return_mean"]
    assert row["estimates"]["final"]["mean"][0] == pytest.approx(test_returns["values"][-1])
    assert row["reached"] == [test_returns["steps"][-1]] and row["budget"] == [400]


# --- grids of real runs ----------------------------------------------------------------------------

def test_grid_from_yaml_expands_variants_env_variants_and_seeds(tmp_path):
    from comparison.grid import expand, grid_from_yaml
    from run_config import ConfigError

    path = tmp_path / "grid.yaml"
    path.write_text("""
name: yaml_grid
configs: [vdn]
variants:
  qmix_slow: {config: qmix, with: {lr: 0.0001}}
env_configs:
  game: {env_config: matrix_game, with: {env_args.payoff: [[1, 0], [0, 2]]}}
seeds: [4, 8]
with: {t_max: 123}
""")
    grid_cells = expand(grid_from_yaml(str(path)))
    assert [cell.cell_id for cell in grid_cells] == [
        "vdn__game__seed4", "qmix_slow__game__seed4", "vdn__game__seed8", "qmix_slow__game__seed8"]
    qmix_slow = grid_cells[1]
    assert qmix_slow.t_max == 123 and qmix_slow.alg.config == "qmix"
    assert qmix_slow.overrides == ("t_max=123", "env_args.payoff=[[1, 0], [0, 2]]", "lr=0.0001", "name=qmix_slow",
                                   "seed=4")
    path.write_text("name: bad\nconfigs: [qmix]\nenv_configs: [matrix_game]\nwith: {lr_rate: 0.1}\n")
    with pytest.raises(ConfigError, match="cell qmix on matrix_game: .*lr_rate.*'lr'"):
        expand(grid_from_yaml(str(path)))


BENCH_GRIDS = sorted(os.listdir(os.path.join(REPO_ROOT, "bench", "grids")))


@pytest.mark.parametrize("grid_file", BENCH_GRIDS)
def test_bench_grid_file_expands_every_cell_on_dry_run(grid_file, tmp_path, capsys):
    """Each grid in bench/grids/ validates every cell's config and lists one command per cell."""
    from comparison.grid import grid_from_yaml

    path = os.path.join(REPO_ROOT, "bench", "grids", grid_file)
    grid = grid_from_yaml(path)
    assert compare.main([f"--grid={path}", "--dry-run", f"--comparisons-dir={tmp_path}"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    expected = len(grid.algs) * len(grid.envs) * len(grid.seeds)
    assert len(printed) == expected and all(line.endswith(": run") for line in printed)
    assert not os.listdir(tmp_path), "a dry run must not create the comparison's folder"


TINY_GRID = ["--configs=qmix,vdn", "--env-configs=matrix_game", "--seeds=2", "--reps=100", "with",
             "t_max=300", "test_interval=100", "test_nepisode=4", "log_interval=100", "runner_log_interval=100",
             "learner_log_interval=100", "batch_size=4", "buffer_size=32", "save_model_interval=100"]


def grid_runs(grid_dir):
    found = {}
    for run in load_runs([str(grid_dir)]):
        found[(run.alg, run.seed)] = run
    return found


def check_four_runs(grid_dir):
    runs = grid_runs(grid_dir)
    assert sorted(runs) == [("qmix", 1), ("qmix", 2), ("vdn", 1), ("vdn", 2)]
    for (alg, seed), run in runs.items():
        assert run.status == "COMPLETED" and run.steps[-1] >= 300
        assert f"cells/{alg}__matrix_game__seed{seed}/sacred/" in run.path
        with open(os.path.join(run.path, "config.json")) as f:
            assert json.load(f)["seed"] == seed


def grid_argv(*flags):
    """The tiny grid's command line with extra flags before its `with` overrides."""
    at = TINY_GRID.index("with")
    return [*TINY_GRID[:at], *flags, *TINY_GRID[at:]]


def test_grid_on_the_process_pool_reports_a_failing_cell_and_runs_the_others(tmp_path, capsys):
    flags = ["--variant", f"broken=qmix checkpoint_path={tmp_path}/no_such_models", "--name=pool",
             f"--comparisons-dir={tmp_path}", "--workers=2"]
    argv = grid_argv(*flags)
    assert compare.main(argv) == 1
    err = capsys.readouterr().err
    assert "cell broken__matrix_game__seed1 failed (exit code 2)" in err
    assert "checkpoint_path=" in err and "no_such_models does not exist" in err   # command, stderr tail
    # Progress, as plain lines when stderr is not a terminal: the first before any cell ran, the
    # last with every cell accounted for, and no carriage returns.
    progress = [line for line in err.splitlines() if line.startswith("pool:")]
    assert "cells: 0/6 done, 0 running, 0 failed" in progress[0]
    assert "cells: 4/6 done, 0 running, 2 failed" in progress[-1] and "\r" not in err
    check_four_runs(tmp_path / "pool")
    assert os.path.isfile(tmp_path / "pool" / "report.md") and os.path.isfile(tmp_path / "pool" / "curves.png")

    # A rerun leaves finished and failed cells alone; --retry-failed runs the failed ones again.
    assert compare.main(argv) == 1
    assert "failed earlier (not rerun; add --retry-failed)" in capsys.readouterr().err
    state = cells.read_state(tmp_path / "pool" / "cells" / "qmix__matrix_game__seed1")
    assert state["attempt"] == 1 and state["status"] == "done"
    assert state["worker_pid"] == os.getpid()   # a thread of this process started main.py
    assert cells.read_state(tmp_path / "pool" / "cells" / "broken__matrix_game__seed2")["attempt"] == 1
    compare.main(grid_argv(*flags, "--retry-failed", "--no-report"))
    assert cells.read_state(tmp_path / "pool" / "cells" / "broken__matrix_game__seed2")["attempt"] == 2
    assert cells.read_state(tmp_path / "pool" / "cells" / "qmix__matrix_game__seed1")["attempt"] == 1


def test_interrupted_grid_resumes_from_checkpoints(tmp_path, capsys):
    argv = ["--configs=qmix", "--env-configs=matrix_game", "--seeds=2", "--name=half", f"--comparisons-dir={tmp_path}",
            "--workers=1", "--no-report", "with", "t_max=2000", "test_interval=400", "test_nepisode=4",
            "log_interval=400", "runner_log_interval=400", "learner_log_interval=400", "batch_size=4",
            "buffer_size=32", "save_model_interval=400"]
    grid_dir = tmp_path / "half"
    second = grid_dir / "cells" / "qmix__matrix_game__seed2"
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "src", "compare.py"), *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:   # a crash once the second cell has written a checkpoint: compare.py killed outright
        while cells.resumable_checkpoint(str(second)) is None:
            assert process.poll() is None, "the grid ended before it could be interrupted"
            time.sleep(0.2)
        child = psutil.Process(cells.read_state(second)["pid"])
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # main.py runs in a session of its own; the kernel told it its launcher died (SIGTERM): it saved
    # a checkpoint where it stopped, and exited, instead of running on unwatched
    child.wait(timeout=60)   # not our child: psutil cannot give its return code
    with open(second / "stderr.log") as f:
        assert "SIGTERM received" in f.read()
    checkpoint = cells.resumable_checkpoint(str(second))
    assert checkpoint_steps(checkpoint)[-1] == stopped_at(second)
    assert cells.read_state(grid_dir / "cells" / "qmix__matrix_game__seed1")["status"] == "done"
    assert cells.read_state(second)["status"] == "running"   # nobody was left to record its end
    assert compare.main([*argv[:argv.index("with")], "--dry-run", *argv[argv.index("with"):]]) == 0
    printed = capsys.readouterr().out
    assert "qmix__matrix_game__seed1: skip (done)" in printed
    assert "qmix__matrix_game__seed2: resume" in printed and f"checkpoint_path={checkpoint}" in printed

    assert compare.main(argv) == 0
    assert cells.read_state(grid_dir / "cells" / "qmix__matrix_game__seed1")["attempt"] == 1   # skipped
    state = cells.read_state(second)
    assert state["status"] == "done" and state["attempt"] == 2
    assert f"checkpoint_path={checkpoint}" in state["command"] and "resume=True" in state["command"]
    runs = grid_runs(grid_dir)
    assert runs[("qmix", 2)].steps[-1] >= 2000 and runs[("qmix", 2)].run_id == 2   # the resumed run
    with open(os.path.join(runs[("qmix", 2)].path, "config.json")) as f:
        assert json.load(f)["resume"] is True


def test_extend_takes_finished_cells_on_to_a_raised_budget_from_their_final_checkpoints(tmp_path, capsys):
    def argv(t_max, *flags, seeds=1, settings=()):
        return ["--configs=qmix", "--env-configs=matrix_game", f"--seeds={seeds}", "--name=grow",
                f"--comparisons-dir={tmp_path}", "--workers=1", "--no-report", *flags, "with", f"t_max={t_max}",
                "test_interval=200", "test_nepisode=4", "log_interval=200", "runner_log_interval=200",
                "learner_log_interval=200", "batch_size=4", "buffer_size=32", "save_model_interval=200", *settings]
    cell = tmp_path / "grow" / "cells" / "qmix__matrix_game__seed1"
    assert compare.main(argv(600)) == 0
    first = grid_runs(tmp_path / "grow")[("qmix", 1)]
    final = cells.newest_checkpoint(str(cell), full_only=False)
    assert final[0] >= 600 and final[2]   # the run's last checkpoint holds the full state

    # A raised t_max alone leaves finished cells done (a forgotten `with t_max=` must not take every
    # cell on to the default budget) and says how to take them on.
    capsys.readouterr()
    assert compare.main(argv(1200)) == 0 and cells.read_state(cell)["attempt"] == 1
    assert f"cell qmix__matrix_game__seed1 is done at {final[0]:,} env steps, below t_max: --extend takes it on" \
        in capsys.readouterr().err
    assert compare.main(argv(1200, "--extend", "--dry-run")) == 0
    assert "qmix__matrix_game__seed1: resume" in capsys.readouterr().out
    assert compare.main(argv(1200, "--extend")) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("grow:")]
    # The cell being extended reads done until it starts: the progress counts it as queued, at its steps.
    assert "cells: 0/1 done" in progress[0] and "100%" not in progress[0]
    assert "cells: 1/1 done" in progress[-1] and "100%" in progress[-1]
    state = cells.read_state(cell)
    assert state["status"] == "done" and state["attempt"] == 2
    assert "resume=True" in state["command"] and f"checkpoint_path={final[1]}" in state["command"]
    grown = grid_runs(tmp_path / "grow")[("qmix", 1)]   # the report keeps the run that went on
    assert grown.run_id == first.run_id + 1 and grown.steps[-1] >= 1200
    assert list(grown.steps[:len(first.steps)]) == list(first.steps)   # the first 600 steps, not redone
    assert grown.steps[len(first.steps)] > final[0]
    assert compare.main(argv(1200, "--extend")) == 0 and cells.read_state(cell)["attempt"] == 2   # at budget

    # A done cell whose final checkpoint lacks the full state cannot go on: it stays done and says so.
    lean = tmp_path / "grow" / "cells" / "qmix__matrix_game__seed2"
    assert compare.main(argv(600, seeds=2, settings=["save_full_state=False"])) == 0
    assert not cells.newest_checkpoint(str(lean), full_only=False)[2]
    capsys.readouterr()
    assert compare.main(argv(1200, "--extend", seeds=2, settings=["save_full_state=False"])) == 0
    err = capsys.readouterr().err
    assert "cell qmix__matrix_game__seed2 is done at" in err and "lacks the full state" in err
    assert cells.read_state(lean)["attempt"] == 1


def long_grid_argv(tmp_path, *flags):
    """Two qmix cells on the matrix game, long enough to be stopped, checkpointing every 400 steps."""
    return ["--configs=qmix", "--env-configs=matrix_game", "--seeds=2", "--name=stopped",
            f"--comparisons-dir={tmp_path}", *flags, "--no-report", "with", "t_max=1000000",
            "test_interval=400", "test_nepisode=4", "log_interval=400", "runner_log_interval=400",
            "learner_log_interval=400", "batch_size=4", "buffer_size=32", "save_model_interval=400"]


def terminate(process, timeout=180):
    """SIGTERM to a compare.py subprocess; its stderr once it has exited (killed if it does not)."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=timeout)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def stopped_at(cell):
    """The env step at which a cell's main.py stopped on a signal (it says so on stderr)."""
    with open(os.path.join(cell, "stderr.log")) as f:
        return int(f.read().split("Interrupted at t_env=")[1].split(".")[0])


def test_signal_to_compare_stops_its_cells_with_a_checkpoint_and_a_second_compare_is_refused(tmp_path, capsys):
    """SIGTERM to compare.py alone (its cells run in their own sessions, as from `nohup ... &`) reaches
    its running main.py once: that saves a checkpoint and exits, no further cell starts, and the cell is
    `interrupted`, which a rerun resumes. While a cell runs, a second compare.py on the grid refuses."""
    argv = long_grid_argv(tmp_path, "--workers=1")
    first = tmp_path / "stopped" / "cells" / "qmix__matrix_game__seed1"
    second = tmp_path / "stopped" / "cells" / "qmix__matrix_game__seed2"
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "src", "compare.py"), *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        while cells.resumable_checkpoint(str(first)) is None:
            assert process.poll() is None, "the grid ended before it could be stopped"
            time.sleep(0.2)
        child = cells.read_state(first)["pid"]
        assert psutil.Process(child).ppid() == process.pid

        assert compare.main(argv) == 2   # a second invocation on the same grid
        assert f"qmix__matrix_game__seed1 (main.py pid {child})" in capsys.readouterr().err
        assert psutil.Process(child).is_running() and cells.read_state(first)["status"] == "running"

    finally:
        err = terminate(process)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err and "run the same command again to resume" in err
    assert not psutil.pid_exists(child)
    state = cells.read_state(first)
    assert state["status"] == "interrupted" and state["returncode"] == 128 + signal.SIGTERM
    assert cells.read_state(second) is None   # queued behind the stopped cell: never started

    # main.py saved a checkpoint at the step it stopped at; the rerun resumes from it.
    checkpoint = cells.resumable_checkpoint(str(first))
    assert checkpoint_steps(checkpoint)[-1] == stopped_at(first)
    assert compare.main([*argv[:argv.index("with")], "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "qmix__matrix_game__seed1: resume" in printed and f"checkpoint_path={checkpoint}" in printed
    assert "qmix__matrix_game__seed2: run" in printed


@RAY_GROUP
def test_signal_to_compare_on_ray_cancels_its_tasks_and_their_cells_save_a_checkpoint(tmp_path):
    """With --ray, SIGTERM to compare.py cancels its Ray tasks: the running cell's task passes SIGTERM
    to its main.py, which saves a checkpoint; the queued cell never starts (each task asks for every
    CPU of the instance: one at a time); compare.py waits for them, then exits 128 + the signal.
    compare.py starts a Ray instance of its own, in a temporary folder of its own, as a user's does
    (ray.init then replaces the driver's SIGTERM handler with an immediate exit: compare.py must
    keep its own)."""
    argv = long_grid_argv(tmp_path, "--ray", f"--ray-cpus={os.cpu_count()}")
    grid_dir = tmp_path / "stopped" / "cells"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rt", dir="/tmp")   # Ray's socket paths must stay short
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "src", "compare.py"), *argv],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        started = None
        while started is None or cells.resumable_checkpoint(str(grid_dir / started)) is None:
            assert process.poll() is None, "the grid ended before it could be stopped"
            running = [cell for cell in ("qmix__matrix_game__seed1", "qmix__matrix_game__seed2")
                       if (cells.read_state(grid_dir / cell) or {}).get("status") == "running"]
            started = started or (running[0] if running else None)
            time.sleep(0.2)
        child = cells.read_state(grid_dir / started)["pid"]
        assert psutil.Process(child).is_running()
    finally:
        err = terminate(process)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    assert not psutil.pid_exists(child)
    state = cells.read_state(grid_dir / started)
    assert state["status"] == "interrupted" and state["returncode"] == 128 + signal.SIGTERM
    checkpoint = cells.resumable_checkpoint(str(grid_dir / started))
    assert checkpoint_steps(checkpoint)[-1] == stopped_at(grid_dir / started)
    queued = ({"qmix__matrix_game__seed1", "qmix__matrix_game__seed2"} - {started}).pop()
    assert cells.read_state(grid_dir / queued) is None   # cancelled before it started


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@RAY_GROUP
def test_grid_on_ray_runs_each_cell_as_a_task(tmp_path, local_ray):
    assert compare.main(grid_argv("--name=ray", f"--comparisons-dir={tmp_path}", "--ray")) == 0
    check_four_runs(tmp_path / "ray")
    workers = {cells.read_state(tmp_path / "ray" / "cells" / f"{alg}__matrix_game__seed{seed}")["worker_pid"]
               for alg in ("qmix", "vdn") for seed in (1, 2)}
    assert os.getpid() not in workers   # Ray's worker processes ran the cells, not this one


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def ray_processes_under(temp_dir):
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


@RAY_GROUP
def test_grid_joins_a_cluster_started_with_ray_start(tmp_path):
    """The README's way: `ray start --head` elsewhere, then compare.py joins it by --ray=ADDRESS or
    RAY_ADDRESS (run as subprocesses: this pytest process may hold its own Ray instance).

    The cluster uses token authentication, given to every process here by environment variables: a
    head started with a token in ~/.ray (any earlier ray.init() writes one) turns it on by itself, and
    a process joining by an explicit address then needs RAY_AUTH_MODE=token, or cannot connect."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")   # Ray's socket paths must stay short
    port, client, agent, agent_grpc, runtime_env, metrics = free_ports(6)
    head_log = tmp_path / "head.log"
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    with open(head_log, "w") as log:
        head = subprocess.Popen(
            [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp_dir}",
             "--include-dashboard=false", "--disable-usage-stats", f"--ray-client-server-port={client}",
             f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
             f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}", "--block"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        while "Ray runtime started" not in head_log.read_text():
            assert head.poll() is None, f"ray start failed:\n{head_log.read_text()}"
            time.sleep(0.2)
        compare_py = os.path.join(REPO_ROOT, "src", "compare.py")
        by_flag = subprocess.run([sys.executable, compare_py, *grid_argv(
            "--name=flag", f"--comparisons-dir={tmp_path}", "--no-report", f"--ray=127.0.0.1:{port}")],
            capture_output=True, text=True, env=env)
        assert by_flag.returncode == 0, by_flag.stderr
        one_cell = [{"--configs=qmix,vdn": "--configs=qmix", "--seeds=2": "--seeds=1"}.get(arg, arg)
                    for arg in grid_argv("--name=env", f"--comparisons-dir={tmp_path}", "--no-report", "--ray")]
        by_env = subprocess.run([sys.executable, compare_py, *one_cell], capture_output=True, text=True,
                                env=dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"))
        assert by_env.returncode == 0, by_env.stderr
        check_four_runs(tmp_path / "flag")
        runs = grid_runs(tmp_path / "env")
        assert sorted(runs) == [("qmix", 1)] and runs[("qmix", 1)].status == "COMPLETED"
        # The head's session logs name every worker process it started (worker-<id>-<job>-<pid>.out):
        # a cell run by a Ray instance compare.py started itself would not be among them.
        logs = os.listdir(os.path.join(temp_dir, "session_latest", "logs"))
        cell_folders = [tmp_path / "flag" / "cells" / f"{alg}__matrix_game__seed{seed}"
                        for alg in ("qmix", "vdn") for seed in (1, 2)]
        for folder in [*cell_folders, tmp_path / "env" / "cells" / "qmix__matrix_game__seed1"]:
            pid = cells.read_state(folder)["worker_pid"]
            assert any(log.startswith("worker-") and log.endswith(f"-{pid}.out") for log in logs), folder
    finally:   # SIGKILL: on SIGTERM the head's GCS and autoscaler linger ~30 s, timing out on each other
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        psutil.wait_procs(ray_processes_under(temp_dir), timeout=10)
        left = ray_processes_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, "stopping the head's process group must stop all of it"
