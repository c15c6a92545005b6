"""The bench/ scripts still run against today's src/ and print the figures the docs quote.

Each script runs as a user runs it (a subprocess from the repository root) at a tiny size; the
figures themselves are measured by hand (docs/benchmarks.md), so these tests check only that each
printed table has its rows and that what must hold whatever the machine does hold (a traced agent
gives the eager agent's outputs; a full replay buffer holds ``buffer_size`` episodes; the shares of
a run's wall time add up to the whole).
"""
import csv
import os
import re
import shutil
import subprocess
import sys

import numpy as np

import compare
from comparison import cells
from comparison.report import write_report
from helpers import REPO_ROOT
from test_comparison import write_run


def run_bench(script, *arguments):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, os.path.join("bench", script), *arguments], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def row(output, label):
    """The numbers on the line that starts with ``label``."""
    lines = [line for line in output.splitlines() if line.startswith(label)]
    assert lines, f"no line starting with {label!r} in:\n{output}"
    return [float(x.replace(",", "")) for x in re.findall(r"-?[\d,]*\.?\d+", lines[0][len(label):])]


def test_update_cost_times_each_learner_given():
    output = run_bench("update_cost.py", "--batch", "2", "--repeats", "1", "qmix",
                       "sale_mb rollout_depth=1 imagination_starts=2")
    assert row(output, "qmix ")[0] > 0
    assert row(output, "sale_mb rollout_depth=1 imagination_starts=2")[0] > 0


def test_target_head_cost_times_both_heads():
    output = run_bench("target_head_cost.py", "--batch", "2", "--rounds", "2", "--updates", "1",
                       "rollout_depth=1")
    assert row(output, "full target head")[0] > 0 and row(output, "greedy actions only")[0] > 0
    assert "saved:" in output


def test_run_costs_checkpoints_a_full_buffer():
    episodes, seconds, megabytes = row(run_bench("run_costs.py", "checkpoint", "qmix"), "qmix ")
    assert episodes == 5000  # qmix.yaml's buffer_size: the buffer was filled before timing
    assert seconds > 0 and megabytes > 1


def test_acting_cost_traced_agents_give_the_eager_outputs():
    output = run_bench("acting_cost.py", "--calls", "20")
    for agent in ("sale_agent", "rnn"):
        line = next(line for line in output.splitlines() if line.startswith(agent + " "))
        assert line.split()[-1] == "True", output


def test_throughput_shares_add_up_to_the_wall_time():
    output = run_bench("throughput.py", "--steps", "300")
    shares = [row(output, part)[1] for part in ("env.step (raw LBF)", "action selection",
                                                "env.reset (raw LBF)", "everything else")]
    assert abs(sum(shares) - 100) < 0.5, output
    assert row(output, "env steps per second")[0] > 0


def test_wall_ratio_prints_the_ratio_of_each_algorithm_to_the_first():
    output = run_bench("wall_ratio.py", "--steps", "300", "--algs", "qmix", "qmix_gru", "qmix trace_acting=False")
    assert row(output, "qmix ")[0] > 0 and row(output, "qmix_gru ")[0] > 0
    assert row(output, "qmix trace_acting=False ")[0] > 0
    for method in ("qmix_gru", "qmix trace_acting=False"):
        assert re.search(rf"ratio {method} / qmix: \d+\.\d+ whole run", output), output
    assert "target" not in output  # issue 9's target is SALE-MB's


def test_env_rates_measures_each_lbf_task():
    output = run_bench("env_rates.py", "--steps", "100", "--train-steps", "100", "--only", "lbf")
    table = [line for line in output.splitlines() if line.startswith("| lbf_")]
    assert len(table) >= 2, output
    for line in table:
        random_rate, training_rate = (float(x.replace(",", "")) for x in line.split("|")[2:4])
        assert random_rate > 0 and training_rate > 0


def test_ab_decision_applies_the_rule_of_docs_method(tmp_path):
    """Known finals (400k-step runs): a learning change far above the control beats it; two time
    savers level with it are not below it and the faster is picked; one far under it is below it; a
    variant with 2 of 3 seeds finished is pending, and so is one with no run in the report."""
    control = [0.30, 0.35, 0.40, 0.45, 0.50]
    variants = {  # alg -> (finals, minutes per run, finished runs)
        "sale_mb": (control, 40, 5), "better": ([0.90, 0.95, 0.99], 40, 3),
        "saver_fast": ([0.36, 0.41, 0.46], 10, 3), "saver_slow": ([0.37, 0.42, 0.47], 20, 3),
        "saver_bad": ([0.01, 0.02, 0.03], 5, 3), "unfinished": ([0.90, 0.95, 0.99], 40, 2)}
    steps = [0, 100000, 200000, 300000, 400000]
    run_id = 0
    for alg, (finals, minutes, done) in variants.items():
        for seed, final in enumerate(finals, start=1):
            run_id += 1
            write_run(tmp_path / "results", alg, "task", run_id, seed, steps, [0.0, 0.0, 0.0, 0.0, final],
                      status="COMPLETED" if seed <= done else "RUNNING", minutes=minutes)
    write_run(tmp_path / "results", "qmix", "task", run_id + 1, 1, steps, [0.0] * 5)  # not in the A/B grid
    write_report("ab", [str(tmp_path / "results")], str(tmp_path / "report"), reps=300, baseline="sale_mb")
    grid = tmp_path / "ab.yaml"
    grid.write_text("name: ab\nconfigs: [better, saver_fast, saver_slow, saver_bad, unfinished, not_started]\n"
                    "env_configs: [task]\nseeds: 3\n")
    output = run_bench("ab_decision.py", str(tmp_path / "report"), "--grid", str(grid),
                       "--time-savers", "saver_fast,saver_slow,saver_bad")
    verdicts = {line.split()[0]: line.split("  ")[-1].strip() for line in output.splitlines()
                if line.split() and line.split()[0] in [*variants, "not_started"]}
    assert verdicts == {"better": "beats", "saver_fast": "not below", "saver_slow": "not below",
                        "saver_bad": "below", "unfinished": "pending", "not_started": "pending"}, output
    assert ("defaults: learning changes that beat: better; time saver: saver_fast (not final: unfinished, "
            "not_started pending)") in output


def report_of_finals(tmp_path, finals):
    """A report of runs on one task whose last test returns are `finals` ({alg: [per seed]}):
    (its folder, the last run id used)."""
    steps = [0, 100000, 200000]
    run_id = 0
    for alg, values in finals.items():
        for seed, final in enumerate(values, start=1):
            run_id += 1
            write_run(tmp_path / "results", alg, "task", run_id, seed, steps, [0.0, 0.0, final])
    write_report("finals", [str(tmp_path / "results")], str(tmp_path / "report"), reps=300)
    return str(tmp_path / "report"), run_id


def test_interval_margin_counts_the_bootstrap_seeds_where_two_intervals_are_apart(tmp_path):
    """Known finals: a group far above another is apart at every bootstrap seed (a positive gap),
    a group level with another at none (a negative gap); a report with several envs needs --env."""
    finals = {"high": [0.80, 0.85, 0.90, 0.95, 0.99], "low": [0.01, 0.02, 0.03, 0.04, 0.05],
              "level": [0.02, 0.01, 0.05, 0.03, 0.04]}
    report, run_id = report_of_finals(tmp_path, finals)
    apart = run_bench("interval_margin.py", report, "high", "low", "--seeds", "4", "--reps", "300")
    assert row(apart, "reps    300: gap min")[0] > 0 and "apart in 4 of 4" in apart, apart
    level = run_bench("interval_margin.py", report, "level", "low", "--seeds", "4", "--reps", "300")
    assert row(level, "reps    300: gap min")[0] < 0 and "apart in 0 of 4" in level, level

    write_run(tmp_path / "results", "high", "other_task", run_id + 1, 1, [0, 100000, 200000], [0.0, 0.0, 0.5])
    write_report("margin", [str(tmp_path / "results")], report, reps=300)
    done = subprocess.run([sys.executable, "bench/interval_margin.py", report, "high", "low"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "choose one with --env" in done.stderr


def test_seeds_needed_finds_more_seeds_part_a_modest_gap_and_uses_the_reports_interval(tmp_path):
    """Known finals: a modest gap inside a wide spread is parted far more often by 60 seeds than by 4;
    groups far apart are apart in every imagined confirmation (in none once the upper one is shifted
    wholly below the other), identical groups almost never. Its batched interval is the report's
    (rliable's) interval for one task."""
    finals = {"high": [0.80, 0.85, 0.90, 0.95, 0.99], "low": [0.01, 0.02, 0.03, 0.04, 0.05],
              "same": [0.05, 0.04, 0.03, 0.02, 0.01],
              "up": [0.15, 0.25, 0.35, 0.45, 0.55], "down": [0.0, 0.1, 0.2, 0.3, 0.4]}
    report, _ = report_of_finals(tmp_path, finals)

    def chances(a, b, *shift):
        output = run_bench("seeds_needed.py", report, a, b, "--n", "4", "60", "--sims", "200", "--reps", "300",
                           *shift)
        return row(output, "n    4:")[2], row(output, "n   60:")[2]

    few, many = chances("up", "down")
    assert many > few + 0.5, (few, many)
    assert chances("high", "low", "--shift", "1.0") == (0.0, 0.0)   # every one below "low"

    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    try:
        import seeds_needed
    finally:
        sys.path.remove(os.path.join(REPO_ROOT, "bench"))
    rng = np.random.default_rng(0)
    scores = {alg: np.array(values) for alg, values in finals.items()}
    for n in (4, 60):
        assert seeds_needed.chance_apart(scores["high"], scores["low"], n, 200, 300, "iqm", rng) == 200
        assert seeds_needed.chance_apart(scores["same"], scores["low"], n, 200, 300, "iqm", rng) <= 10

    from comparison import stats
    both = np.concatenate([scores["up"], scores["high"]])
    low, high = seeds_needed.intervals(both[None, :], "iqm", 5000, rng)
    _, rliable_low, rliable_high = stats.iqm_and_mean({"x": both[:, None]}, 5000, 0)["x"]["iqm"]
    assert abs(low[0] - rliable_low) < 0.03 and abs(high[0] - rliable_high) < 0.03, \
        (low, high, rliable_low, rliable_high)


def test_archived_cells_restore_as_done_and_a_resumed_grid_runs_only_the_rest(tmp_path, capsys):
    """A real grid of two cells, both finished; the second is then marked interrupted. Saving archives
    the done cell's state and Sacred records only (no checkpoints, nothing of the unfinished cell);
    on a machine without the grid's folder, restoring it makes the grid skip that cell and run the
    other, and the report reads the archive itself."""
    argv = ["--configs=qmix", "--env-configs=matrix_game", "--seeds=2", "--name=campaign",
            f"--comparisons-dir={tmp_path}", "--workers=1", "--no-report", "with", "t_max=400",
            "test_interval=200", "test_nepisode=4", "batch_size=4", "buffer_size=32", "save_model_interval=200"]
    assert compare.main(argv) == 0
    grid_dir, archive = tmp_path / "campaign", tmp_path / "docs" / "runs"
    first, second = (f"qmix__matrix_game__seed{seed}" for seed in (1, 2))
    cells.write_state(grid_dir / "cells" / second, dict(cells.read_state(grid_dir / "cells" / second),
                                                        status="interrupted"))

    def archive_runs(action):
        done = subprocess.run(["bash", "bench/archive_runs.sh", action, str(grid_dir),
                               os.path.relpath(archive, REPO_ROOT)],   # relative, as a user gives it
                              cwd=REPO_ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "saved 1 done cells" in archive_runs("save")
    saved = sorted(os.path.relpath(os.path.join(d, f), archive) for d, _, files in os.walk(archive) for f in files)
    assert saved == [f"cells/{first}/cell.json", *(f"cells/{first}/sacred/qmix/matrix_game/1/{name}.json"
                                                  for name in ("config", "metrics", "run"))]

    shutil.rmtree(grid_dir)   # a new machine: the grid's folder is gone
    assert f"restored {first}" in archive_runs("restore")
    capsys.readouterr()
    assert compare.main([*argv[:argv.index("with")], "--dry-run", *argv[argv.index("with"):]]) == 0
    printed = capsys.readouterr().out
    assert f"{first}: skip (done)" in printed and f"{second}: run" in printed
    assert compare.main(argv) == 0
    assert cells.read_state(grid_dir / "cells" / first)["attempt"] == 1   # not run again
    assert cells.read_state(grid_dir / "cells" / second)["status"] == "done"
    assert f"keep {first}" in archive_runs("restore")   # a cell already there is left as it is

    written = write_report("campaign", [str(archive)], str(tmp_path / "report"), reps=100)
    with open(written["paths"]["runs"]) as f:
        assert [(row["alg"], row["seed"]) for row in csv.DictReader(f)] == [("qmix", "1")]   # the archived run
