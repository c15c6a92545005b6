"""The report of a comparison: tables and figures from Sacred run folders, grouped by env x alg.

Writes, in the output folder:
- `report.md`: per (env, alg) the seeds, budget, env steps reached and the IQM / mean test
  returns with 95% stratified-bootstrap intervals; across tasks, min-max normalised aggregates and
  the probability of improvement of each algorithm over each other one; the wall time per env step
  of each (env, alg) and its ratio to the fastest algorithm on that env;
- `table.csv` (the same per group, every number) and `runs.csv` (final / best / AUC per seed);
- `curves.png` (learning curves, one panel per env) and `aggregates.png` (normalised IQM and mean).
"""
import csv
import itertools
import math
import os

import numpy as np

from comparison import plots, stats
from comparison.runs import load_runs

SCORES = ("final", "best", "auc")


class ReportError(ValueError):
    """Nothing to report; the message says where the report looked."""


def _interval(estimate, digits=3):
    point, low, high = estimate
    if math.isclose(low, high) and math.isclose(point, low):
        return f"{point:.{digits}f}"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _steps(values):
    low, high = min(values), max(values)
    return f"{low:,.0f}" if low == high else f"{low:,.0f}-{high:,.0f}"


def group_runs(runs):
    """{(env, alg): [Run] sorted by seed}."""
    groups = {}
    for run in sorted(runs, key=lambda r: (r.env, r.alg, r.seed if r.seed is not None else -1)):
        groups.setdefault((run.env, run.alg), []).append(run)
    return groups


def group_rows(groups, reps, seed):
    """One row per (env, alg): seeds, budgets and interval estimates of each score."""
    rows = []
    for (env, alg), runs in groups.items():
        scores = [stats.per_seed_scores(run) for run in runs]
        estimates = {name: stats.iqm_and_mean({alg: np.array([[s[name]] for s in scores])}, reps, seed)[alg]
                     for name in SCORES}
        rows.append({"env": env, "alg": alg, "seeds": len(runs), "budget": sorted({run.t_max for run in runs}),
                     "reached": [int(run.steps[-1]) for run in runs], "env_steps": [run.env_steps for run in runs],
                     "unfinished": [f"{alg} on {env} seed {run.seed} ({run.status}, last test at {int(run.steps[-1]):,})"
                                    for run in runs if run.status != "COMPLETED"],
                     "wall_h": float(np.nanmean([run.wall_s for run in runs]) / 3600),
                     "wall_us_per_step": wall_per_step(runs), "estimates": estimates})
    return rows


def wall_per_step(runs):
    """Microseconds of wall time per env step over the runs whose wall time is known: their summed
    wall time over their summed env steps (unfinished runs weigh as far as they got); NaN if none."""
    timed = [run for run in runs if not math.isnan(run.wall_s) and run.env_steps > 0]
    if not timed:
        return float("nan")
    return sum(run.wall_s for run in timed) / sum(run.env_steps for run in timed) * 1e6


def wall_lines(rows):
    """The report's wall-time table: per (env, alg) the wall time per env step and its ratio to the
    fastest algorithm (least wall time per env step) on the same env."""
    fastest = {}
    for row in rows:
        if not math.isnan(row["wall_us_per_step"]):
            fastest[row["env"]] = min(fastest.get(row["env"], math.inf), row["wall_us_per_step"])
    lines = ["", "## Wall time", "",
             "Wall time per env step: a group's summed wall time over its summed env steps (a resumed run's "
             "time includes its earlier attempts). Runs that shared cores with others slow each other; "
             "for a speed claim, time the algorithms interleaved in one process (`bench/wall_ratio.py`).", "",
             "| env | alg | env steps | wall us / env step | x fastest on env |", "|---|---|---|---|---|"]
    for row in rows:
        per_step = row["wall_us_per_step"]
        ratio = per_step / fastest.get(row["env"], math.nan)
        lines.append(f"| {row['env']} | {row['alg']} | {sum(row['env_steps']):,} | {per_step:,.0f} | {ratio:.2f} |")
    return lines


def shared_algs(groups):
    """The algorithms that ran on every env of the groups."""
    envs = {env for env, _ in groups}
    return sorted({alg for _, alg in groups if all((env, alg) in groups for env in envs)})


def cross_task(groups, reps, seed, baseline=None):
    """Normalised final-return aggregates and probabilities of improvement over the envs that every
    compared algorithm ran (with a `baseline`, only of each other algorithm over it); None when
    fewer than two algorithms share an env."""
    envs = sorted({env for env, _ in groups})
    algs = shared_algs(groups)
    if len(algs) < 2:
        return None
    finals = {env: {alg: [stats.per_seed_scores(run)["final"] for run in groups[(env, alg)]] for alg in algs}
              for env in envs}
    normalised = stats.min_max_normalise(finals)
    # rliable wants [runs, tasks]: an algorithm's first n seeds on every env, n its fewest seeds on one.
    matrices = {}
    for alg in algs:
        n = min(len(normalised[env][alg]) for env in envs)
        matrices[alg] = np.stack([normalised[env][alg][:n] for env in envs], axis=1)
    aggregates = stats.iqm_and_mean(matrices, reps, seed)
    compared = [(x, baseline) for x in algs if x != baseline] if baseline else itertools.permutations(algs, 2)
    pairs = {(x, y): (matrices[x], matrices[y]) for x, y in compared}
    return {"envs": envs, "algs": algs, "runs": {alg: m.shape[0] for alg, m in matrices.items()},
            "aggregates": aggregates, "improvement": stats.probability_of_improvement(pairs, reps, seed)}


def markdown(name, groups, rows, across, roots, n_runs):
    lines = [f"# Comparison: {name}", "",
             f"{n_runs} runs read from {', '.join(f'`{r}`' for r in roots)}. Test return: the greedy test "
             "episodes' mean return; final: the last test of a run, best: its highest, AUC: the area "
             "under its test curve over env steps divided by their span. IQM / mean over seeds with 95% "
             "stratified-bootstrap intervals (rliable).", ""]
    from_tables = sorted({f"{run.alg} on {run.env}" for runs in groups.values() for run in runs if run.scores})
    if from_tables:
        lines += [f"Read from earlier reports' runs.csv (their scores as those reports computed them; no "
                  f"learning curve in curves.png): {', '.join(from_tables)}.", ""]
    lines += ["| env | alg | seeds | budget (t_max) | last test (env step) | final IQM | final mean | best IQM | "
              "AUC IQM | wall min / run |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        est = row["estimates"]
        lines.append(
            f"| {row['env']} | {row['alg']} | {row['seeds']} | {', '.join(f'{b:,}' for b in row['budget'])} | "
            f"{_steps(row['reached'])} | {_interval(est['final']['iqm'])} | {_interval(est['final']['mean'])} | "
            f"{_interval(est['best']['iqm'])} | {_interval(est['auc']['iqm'])} | {row['wall_h'] * 60:.1f} |")
    unfinished = [text for row in rows for text in row["unfinished"]]
    if unfinished:
        lines += ["", f"**{len(unfinished)} of {n_runs} runs have not finished** (their final is their last "
                  f"test so far): {'; '.join(unfinished)}."]
    if across:
        lines += ["", f"## Across tasks ({', '.join(across['envs'])})", "",
                  "Final test return normalised per env (0: the lowest run of any algorithm, 1: the highest).", "",
                  "| alg | runs per env | IQM | mean |", "|---|---|---|---|"]
        for alg in across["algs"]:
            agg = across["aggregates"][alg]
            lines.append(f"| {alg} | {across['runs'][alg]} | {_interval(agg['iqm'])} | {_interval(agg['mean'])} |")
        lines += ["", "| probability of improvement | P(X > Y) [95% CI] |", "|---|---|"]
        for (x, y), estimate in across["improvement"].items():
            lines.append(f"| {x} over {y} | {_interval(estimate, 2)} |")
    lines += wall_lines(rows)
    return "\n".join(lines) + "\n"


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def table_records(rows):
    records = []
    for row in rows:
        record = {"env": row["env"], "alg": row["alg"], "seeds": row["seeds"],
                  "budget": ";".join(map(str, row["budget"])), "min_steps_reached": min(row["reached"]),
                  "max_steps_reached": max(row["reached"]), "wall_h_per_run": round(row["wall_h"], 4),
                  "wall_us_per_env_step": round(row["wall_us_per_step"], 1)}
        for score, agg in itertools.product(SCORES, ("iqm", "mean")):
            point, low, high = row["estimates"][score][agg]
            record.update({f"{score}_{agg}": point, f"{score}_{agg}_low": low, f"{score}_{agg}_high": high})
        records.append(record)
    return records


def across_records(across):
    """The across-task figures as rows: each algorithm's normalised final IQM and mean, then each
    probability of improvement (`alg` over `over`)."""
    records = [{"measure": f"normalised_final_{agg}", "alg": alg, "over": "", "runs_per_env": across["runs"][alg],
                **dict(zip(("estimate", "low", "high"), across["aggregates"][alg][agg]))}
               for alg in across["algs"] for agg in ("iqm", "mean")]
    records += [{"measure": "p_improvement", "alg": x, "over": y, "runs_per_env": across["runs"][x],
                 **dict(zip(("estimate", "low", "high"), estimate))}
                for (x, y), estimate in across["improvement"].items()]
    return records


def run_records(groups):
    return [{"env": run.env, "alg": run.alg, "seed": run.seed, "status": run.status, "t_max": run.t_max,
             "steps_reached": int(run.steps[-1]),
             "env_steps": run.env_steps, "wall_s": run.wall_s, **stats.per_seed_scores(run), "path": run.path}
            for runs in groups.values() for run in runs]


def select(runs, attribute, names):
    """The runs whose `attribute` ("env" or "alg") is one of `names` (None: all); a name no run has
    is an error listing the ones there are."""
    if names is None:
        return runs
    present = sorted({getattr(run, attribute) for run in runs})
    unknown = [name for name in names if name not in present]
    if unknown:
        raise ReportError(f"No run of {attribute} {', '.join(unknown)}; the runs' {attribute}s: "
                          f"{', '.join(present)}.")
    return [run for run in runs if getattr(run, attribute) in names]


def write_report(name, roots, out_dir, metric=None, reps=2000, seed=0, points=50, envs=None, algs=None,
                 baseline=None):
    """Read the runs under `roots` (those on `envs` and of `algs` only, if given), write the report into `out_dir`;
    with a `baseline` algorithm, the probabilities of improvement are each other algorithm's over
    it. Returns what it wrote: {"paths": {...}, "rows": [...], "across": {...} or None,
    "figures": {"curves": Figure, ...}} (figures are closed once saved, and still hold their axes' data)."""
    runs = select(select(load_runs(roots, metric), "env", envs), "alg", algs)
    if not runs:
        raise ReportError(f"No usable Sacred run (sacred/<alg>/<env>/<id>/ with a test return) under "
                          f"{', '.join(roots)}.")
    groups = group_runs(runs)
    if baseline is not None and baseline not in shared_algs(groups):
        raise ReportError(f"--baseline {baseline}: not among the algorithms that ran on every reported env "
                          f"({', '.join(shared_algs(groups)) or 'none'}); --envs can narrow the envs.")
    rows = group_rows(groups, reps, seed)
    across = cross_task(groups, reps, seed, baseline)
    os.makedirs(out_dir, exist_ok=True)
    paths = {key: os.path.join(out_dir, file) for key, file in
             (("markdown", "report.md"), ("table", "table.csv"), ("runs", "runs.csv"), ("curves", "curves.png"))}
    with open(paths["markdown"], "w") as f:
        f.write(markdown(name, groups, rows, across, roots, len(runs)))
    write_csv(paths["table"], table_records(rows))
    write_csv(paths["runs"], run_records(groups))
    figures = {"curves": plots.learning_curves(groups, reps, seed, points)}
    plots.save(figures["curves"], paths["curves"])
    if across:
        paths["across"] = os.path.join(out_dir, "across.csv")
        write_csv(paths["across"], across_records(across))
        paths["aggregates"] = os.path.join(out_dir, "aggregates.png")
        figures["aggregates"] = plots.aggregates(across["aggregates"], "normalised final test return")
        plots.save(figures["aggregates"], paths["aggregates"])
    return {"paths": paths, "rows": rows, "across": across, "figures": figures}
