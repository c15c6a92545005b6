"""Sample efficiency: algorithms compared at equal env-step budgets over seeds.

Trains every algorithm (and every named variant) on every env config for each seed through the real
entry point, `src/main.py`, one subprocess per run with `--workers` of them at once, then writes a
markdown table of test returns and wall time per env step.

    python bench/sample_efficiency.py [--algs qmix vdn ...] [--envs lbf_2s_8x8_2p_2f_coop ...]
        [--seeds 1 2 3] [--t-max 200000] [--test-interval 20000] [--test-nepisode 32] [--workers 2]
        [--out results/sample_efficiency] [--set key=value ...]
        [--variant img0.25=sale_mb:imagined_td_weight=0.25 ...] [--report-only] [--write-docs docs/benchmarks.md]

Runs go seed by seed (every env and alg with seed 1 before any with seed 2), so that an interrupted
benchmark already holds a comparable set. Run `<name>` on env config `<env>` with seed
`<s>` lives in `<out>/<name>/<env>/seed<s>/`: its Sacred record (`sacred/<alg>/<env id>/<run id>/`),
its console log (`main.log`), and `bench.json` (wall seconds around the subprocess and the env steps
reached). The benchmark is resumable: a folder holding a completed run is skipped (and must have been
run with the same settings), one holding an unfinished run is cleared and run again.

What it measures, per (name, env, budget), from the runs' `test_return_mean` (greedy test episodes):
- final: the last test logged; best: the highest test over the run. Both as the mean over seeds
  ± the half-width of a 95% Student t confidence interval (sample std, n-1 degrees of freedom);
- the mean test return at 1/4 and 1/2 of the budget: the test made for the last multiple of
  test_interval within it (a test comes after the first episode, then one every test_interval steps,
  each up to an episode late, so test i stands for i * test_interval steps);
- wall time per env step (µs): job wall seconds / env steps reached, mean over seeds, start-up
  included, and its ratio to qmix's on the same env and budget. Runs share the machine's cores with
  the other `--workers - 1` concurrent runs, so compare timings taken with the same `--workers`.

Relative `--out` and `--write-docs` paths resolve from the repository root, as results paths do in
the project's configs.
"""
import argparse
import dataclasses
import datetime
import difflib
import glob
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC_DIR = os.path.join(REPO_ROOT, "src")
MAIN = os.path.join(SRC_DIR, "main.py")
sys.path.insert(0, SRC_DIR)

from run_config import ConfigError, available_configs, build_config, parse_overrides  # noqa: E402

DEFAULT_ALGS = ["sale_mb", "qmix", "sale_mb_no_wm", "sale_mb_no_sale", "sale_mb_no_klbal", "sale_mb_no_state"]
DEFAULT_ENVS = ["lbf_2s_8x8_2p_2f_coop", "lbf_10x10_4p_3f"]
BASELINE = "qmix"
BUDGET_FRACTIONS = {"1/4": 0.25, "1/2": 0.5}  # column label: share of t_max
DOCS_BEGIN = "<!-- sample_efficiency:begin -->"
DOCS_END = "<!-- sample_efficiency:end -->"
POLL_SECONDS = 0.2
LOG_NAME = "main.log"
BENCH_NAME = "bench.json"
# Keys of a run's command line that may differ from its recorded config (the folder may have moved).
UNCOMPARED_KEYS = {"local_results_path"}
# Keys the benchmark sets from --seeds and --out; --set and --variant may not change them.
RESERVED_KEYS = {"seed": "--seeds", "local_results_path": "--out"}

# Student t quantiles t_{0.975, df}, for df = n - 1 = 1..10; above that, a Cornish-Fisher expansion.
T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706,
         6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622, 10: 2.2281}
Z_975 = 1.959964

OVERRIDE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=.*", re.DOTALL)
# A comma starts the next override of a --variant only when `key=` follows (lists keep their commas).
VARIANT_SPLIT = re.compile(r",(?=[A-Za-z_][\w.]*=)")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.+-]+")


class BenchError(Exception):
    """A problem with the benchmark's arguments or results folder; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """A row of the table: an alg config run with extra overrides (none for a plain alg)."""
    name: str
    alg: str
    overrides: tuple


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run: a variant on an env config with one seed."""
    variant: Variant
    env: str
    seed: int
    folder: str
    overrides: tuple  # the `with key=value` tokens of its command line

    def describe(self):
        return f"{self.variant.name} on {self.env}, seed {self.seed}"

    def command(self):
        return [sys.executable, MAIN, f"--config={self.variant.alg}", f"--env-config={self.env}", "with",
                *self.overrides]


@dataclasses.dataclass
class SeedResult:
    """What one completed run contributes to the table."""
    t_max: int
    test_interval: int
    test_returns: list
    wall_seconds: float = None
    t_env: int = None
    workers: int = None
    cpu_count: int = None


# --- command line -------------------------------------------------------------------------------

def override_token(text):
    """An argparse type: a `key=value` override (dotted keys allowed, the value may be empty)."""
    if not OVERRIDE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not key=value (e.g. batch_size=16 or env_args.time_limit=25)")
    key = text.split("=", 1)[0]
    if key in RESERVED_KEYS:
        raise argparse.ArgumentTypeError(f"{key} is set by the benchmark; use {RESERVED_KEYS[key]}")
    return text


def variant_spec(text):
    """An argparse type: `NAME=ALG[:key=value,key=value]` -> Variant."""
    name, equals, rest = text.partition("=")
    alg, _, override_text = rest.partition(":")
    if not equals or not NAME_PATTERN.fullmatch(name) or not alg:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=ALG:key=value,key=value (e.g. img0.25=sale_mb:imagined_td_weight=0.25); "
            f"NAME may hold letters, digits and _.+-")
    overrides = VARIANT_SPLIT.split(override_text) if override_text else []
    return Variant(name, alg, tuple(override_token(token) for token in overrides))


def repo_path(path):
    """Relative paths resolve from the repository root."""
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algs", nargs="+", default=DEFAULT_ALGS,
                        help="alg configs (src/config/algs/<alg>.yaml), in table order")
    parser.add_argument("--envs", nargs="+", default=DEFAULT_ENVS,
                        help="env configs (src/config/envs/<env>.yaml)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="seeds, run in this order")
    parser.add_argument("--t-max", type=int, default=200000, help="env-step budget of every run (t_max)")
    parser.add_argument("--test-interval", type=int, default=20000,
                        help="env steps between tests (also the log intervals)")
    parser.add_argument("--test-nepisode", type=int, default=32, help="greedy test episodes per test")
    parser.add_argument("--workers", type=int, default=2, help="runs (subprocesses) at once")
    parser.add_argument("--out", default="results/sample_efficiency",
                        help="results folder (relative: from the repository root)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=override_token,
                        metavar="KEY=VALUE", help="extra override for every run (repeatable)")
    parser.add_argument("--variant", dest="variants", action="append", default=[], type=variant_spec,
                        metavar="NAME=ALG:KEY=VALUE,...",
                        help="a named variant of ALG with extra overrides, a row and folder of its own "
                             "(repeatable), e.g. img0.25=sale_mb:imagined_td_weight=0.25")
    parser.add_argument("--report-only", action="store_true", help="run nothing; tabulate what --out holds")
    parser.add_argument("--write-docs", metavar="PATH",
                        help=f"markdown file whose section between {DOCS_BEGIN} and {DOCS_END} becomes the "
                             f"table (appended when the markers are missing; relative: from the repository root)")
    options = parser.parse_args(argv)
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    return options


# --- planning -----------------------------------------------------------------------------------

def table_variants(options):
    """The plain algs, then the --variant rows; names must be unique."""
    variants = [Variant(alg, alg, ()) for alg in dict.fromkeys(options.algs)] + options.variants
    names = [variant.name for variant in variants]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BenchError(f"Table names must be unique, but {', '.join(repeated)} is given more than once "
                         f"(--algs and --variant names share one namespace).")
    return variants


def check_config_names(kind, names, flag):
    """Every name must have a `src/config/<kind>/<name>.yaml`; missing ones are named with the closest."""
    available = available_configs(kind)
    problems = []
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
            hint = f" (closest: {', '.join(close)})" if close else ""
            problems.append(f"there is no src/config/{kind}/{name}.yaml{hint}")
    if problems:
        raise BenchError(f"{flag}: {'; '.join(problems)}. Available: {', '.join(available)}.")


def run_overrides(options, variant, seed, folder):
    """The `with` tokens of a run: the benchmark's settings, then the variant's, then --set."""
    interval = options.test_interval
    return (f"seed={seed}", f"t_max={options.t_max}", f"test_interval={interval}",
            f"test_nepisode={options.test_nepisode}", f"log_interval={interval}",
            f"runner_log_interval={interval}", f"learner_log_interval={interval}", "save_model=False",
            f"local_results_path={folder}", *variant.overrides, *options.overrides)


def make_jobs(options, variants):
    """Jobs in the order they should finish: by seed, then env, then table order."""
    out = repo_path(options.out)
    jobs = []
    for seed in dict.fromkeys(options.seeds):
        for env in dict.fromkeys(options.envs):
            for variant in variants:
                folder = os.path.join(out, variant.name, env, f"seed{seed}")
                jobs.append(Job(variant, env, seed, folder, run_overrides(options, variant, seed, folder)))
    return jobs


def check_job_configs(jobs):
    """Build each (variant, env) config as main.py would, so a bad override stops nothing mid-way."""
    checked = set()
    for job in jobs:
        if (job.variant, job.env) in checked:
            continue
        try:
            build_config(job.variant.alg, job.env, parse_overrides(job.overrides), check_names=False)
        except ConfigError as err:
            raise BenchError(f"{job.variant.name} on {job.env}: {err}") from None
        checked.add((job.variant, job.env))


def jobs_to_run(jobs):
    """Skip jobs already completed with the same settings; clear the folders of unfinished ones."""
    pending, stale = [], []
    for job in jobs:
        run = completed_run(job.folder)
        if run is None:
            pending.append(job)
            continue
        differences = config_differences(read_json(run, "config.json"), job.overrides)
        if differences:
            stale.append(f"  {run}: {'; '.join(differences)}")
    if stale:
        raise BenchError("These completed runs were made with other settings; use another --out or delete "
                         "them:\n" + "\n".join(stale))
    for job in pending:
        if os.path.exists(job.folder):
            print(f"clearing unfinished {job.describe()}: {job.folder}")
            shutil.rmtree(job.folder)
    return pending


def config_differences(config, overrides):
    """`key: recorded value, wanted value` for each override a recorded config disagrees with."""
    differences = []
    for key, wanted in dict(parse_overrides(overrides)).items():
        if key in UNCOMPARED_KEYS:
            continue
        recorded = config
        for part in key.split("."):
            recorded = recorded.get(part) if isinstance(recorded, dict) else None
        if recorded != wanted:
            differences.append(f"{key}={recorded!r}, now {wanted!r}")
    return differences


# --- Sacred records -----------------------------------------------------------------------------

def read_json(folder, name):
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def completed_run(job_folder):
    """The newest Sacred run folder under `job_folder` whose status is COMPLETED, else None."""
    folders = [path for path in glob.glob(os.path.join(job_folder, "sacred", "*", "*", "*"))
               if os.path.basename(path).isdigit()]
    for folder in sorted(folders, key=lambda path: int(os.path.basename(path)), reverse=True):
        try:
            if read_json(folder, "run.json").get("status") == "COMPLETED":
                return folder
        except (OSError, ValueError):
            continue
    return None


def t_env_reached(metrics, t_max):
    """Env steps a completed run trained for: it runs until t_env passes t_max, so at least t_max
    (the last logged step can be up to a log interval earlier)."""
    logged = max((max(series["steps"]) for series in metrics.values() if series["steps"]), default=0)
    return max(logged, t_max)


# --- running ------------------------------------------------------------------------------------

def run_jobs(jobs, workers):
    """Run the jobs, `workers` at a time, in order; return the failure messages."""
    pending, running, failures = list(jobs), [], []
    try:
        while pending or running:
            while pending and len(running) < workers:
                running.append(start_job(pending.pop(0), workers))
                print(f"[{len(jobs) - len(pending)}/{len(jobs)}] started {running[-1]['job'].describe()}",
                      flush=True)
            time.sleep(POLL_SECONDS)
            for started in [started for started in running if started["process"].poll() is not None]:
                running.remove(started)
                failure = finish_job(started, time.perf_counter() - started["start"])
                if failure:
                    failures.append(failure)
    except KeyboardInterrupt:
        for started in running:
            started["process"].terminate()
            started["process"].wait()
            started["log"].close()
        raise
    return failures


def start_job(job, workers):
    """Start a run in its own subprocess, its output going to `main.log` in its folder."""
    os.makedirs(job.folder, exist_ok=True)
    log = open(os.path.join(job.folder, LOG_NAME), "w")
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    process = subprocess.Popen(job.command(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=environment)
    return {"job": job, "process": process, "log": log, "start": start, "workers": workers}


def finish_job(started, wall_seconds):
    """Record a finished run's timing in `bench.json`; return a failure message, or None."""
    started["log"].close()
    job, code = started["job"], started["process"].returncode
    run = completed_run(job.folder)
    if code != 0 or run is None:
        log_path = os.path.join(job.folder, LOG_NAME)
        print(f"FAILED {job.describe()} (exit code {code}); last lines of {log_path}:\n{log_tail(log_path)}",
              flush=True)
        return f"{job.describe()}: exit code {code}, see {log_path}"
    t_env = t_env_reached(read_json(run, "metrics.json"), read_json(run, "config.json")["t_max"])
    record = {"wall_seconds": round(wall_seconds, 3), "t_env": t_env, "workers": started["workers"],
              "cpu_count": os.cpu_count()}
    with open(os.path.join(job.folder, BENCH_NAME), "w") as f:
        json.dump(record, f, indent=2)
    print(f"finished {job.describe()} in {wall_seconds:.1f} s ({t_env} env steps)", flush=True)
    return None


def log_tail(path, lines=5):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:]).rstrip()


# --- results ------------------------------------------------------------------------------------

def load_seed_result(job_folder):
    """The SeedResult of a job folder's completed run, or None when it has none (or no test yet)."""
    run = completed_run(job_folder)
    if run is None:
        return None
    config, metrics = read_json(run, "config.json"), read_json(run, "metrics.json")
    tests = metrics.get("test_return_mean")
    if not tests or not tests["values"]:
        return None
    result = SeedResult(config["t_max"], config["test_interval"], tests["values"])
    bench_path = os.path.join(job_folder, BENCH_NAME)
    if os.path.isfile(bench_path):
        bench = read_json(job_folder, BENCH_NAME)
        result.wall_seconds = bench["wall_seconds"]
        result.t_env = max(bench["t_env"], config["t_max"])
        result.workers, result.cpu_count = bench["workers"], bench["cpu_count"]
    return result


def collect_results(out):
    """{(env, name, t_max): [SeedResult, ...]} for every completed run under `out`."""
    groups = {}
    for job_folder in sorted(glob.glob(os.path.join(out, "*", "*", "seed*"))):
        result = load_seed_result(job_folder)
        if result is None:
            continue
        name, env = job_folder.split(os.sep)[-3:-1]
        groups.setdefault((env, name, result.t_max), []).append(result)
    return groups


def ordered_keys(groups, names, envs):
    """Group keys with the requested envs and names first, in the requested order, then the rest."""
    def rank(value, order):
        return (order.index(value), "") if value in order else (len(order), value)

    return sorted(groups, key=lambda key: (rank(key[0], envs), rank(key[1], names), key[2]))


def t_quantile(df):
    """t_{0.975, df}: the table for df <= 10, a Cornish-Fisher expansion (error < 1e-3) above."""
    if df in T_975:
        return T_975[df]
    z = Z_975
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def mean_and_half_width(values):
    """The mean and the half-width of its 95% t interval (None for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def return_at_budget(result, budget):
    """The test made for the last multiple of test_interval within `budget` env steps, or None.

    run.py tests after the first episode, then whenever test_interval steps have passed since the last
    test, so test i is made at i * test_interval steps plus at most i + 1 episodes.
    """
    index = int(budget // result.test_interval)
    return result.test_returns[index] if index < len(result.test_returns) else None


def summarise(results):
    """The table's numbers for one (env, name, budget) group of seeds."""
    timed = [result for result in results if result.wall_seconds is not None and result.t_env]
    row = {"seeds": len(results),
           "final": mean_and_half_width([result.test_returns[-1] for result in results]),
           "best": mean_and_half_width([max(result.test_returns) for result in results]),
           "us_per_step": statistics.fmean(1e6 * r.wall_seconds / r.t_env for r in timed) if timed else None}
    for label, fraction in BUDGET_FRACTIONS.items():
        reached = [return_at_budget(result, fraction * result.t_max) for result in results]
        reached = [value for value in reached if value is not None]
        row[label] = statistics.fmean(reached) if reached else None
    return row


def format_interval(mean_and_width):
    mean, width = mean_and_width
    return f"{mean:.3f}" if width is None else f"{mean:.3f} ± {width:.3f}"


def format_optional(value, pattern):
    return "–" if value is None else pattern.format(value)


def markdown_row(cells):
    return "| " + " | ".join(cells) + " |"


def results_table(groups, names, envs):
    """The markdown table (and its legend) of every group, with per-step cost relative to qmix's."""
    rows = {key: summarise(results) for key, results in groups.items()}
    header = ["env", "alg", "seeds", "budget (env steps)", "final test return", "best test return",
              *(f"return at {label} budget" for label in BUDGET_FRACTIONS), "µs / env step", f"vs {BASELINE}"]
    lines = [markdown_row(header), "|---" * len(header) + "|"]
    for key in ordered_keys(groups, names, envs):
        env, name, t_max = key
        row = rows[key]
        baseline = rows.get((env, BASELINE, t_max), {}).get("us_per_step")
        ratio = row["us_per_step"] / baseline if baseline and row["us_per_step"] else None
        lines.append(markdown_row([
            env, name, str(row["seeds"]), f"{t_max:,}", format_interval(row["final"]), format_interval(row["best"]),
            *(format_optional(row[label], "{:.3f}") for label in BUDGET_FRACTIONS),
            format_optional(row["us_per_step"], "{:,.0f}"), format_optional(ratio, "{:.2f}×")]))
    legend = ("Test return: `test_return_mean` (greedy test episodes). final: the last test; best: the highest "
              "test of the run; both the mean over seeds ± the half-width of a 95% Student t interval. "
              "Return at 1/4 (1/2) budget: mean over seeds of the test made for the last multiple of test_interval "
              "within 1/4 (1/2) of t_max. µs / env step: "
              "wall time of the whole run (start-up included) / env steps, mean over seeds; "
              f"vs {BASELINE}: its ratio to {BASELINE}'s on the same env and budget.")
    return "\n".join(lines) + "\n\n" + legend


# --- docs ---------------------------------------------------------------------------------------

def recorded(groups, field):
    """The distinct values of a bench.json field over all runs, as text."""
    values = sorted({getattr(result, field) for results in groups.values() for result in results} - {None})
    return ", ".join(str(value) for value in values) or "unknown"


def docs_section(table, groups, argv):
    command = shlex.join(["python", "bench/sample_efficiency.py", *argv])
    header = (f"Produced by `{command}` on {datetime.date.today().isoformat()}, on a machine with "
              f"{recorded(groups, 'cpu_count')} cores (`os.cpu_count()`), which the runs shared, "
              f"`--workers {recorded(groups, 'workers')}` of them at a time.")
    return f"{DOCS_BEGIN}\n{header}\n\n{table}\n{DOCS_END}"


def write_docs(path, section):
    """Replace the marked section of a markdown file (or append it, markers included)."""
    text = open(path).read() if os.path.isfile(path) else ""
    begin, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if begin < 0 and end < 0:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section + "\n"
    elif 0 <= begin < end:
        text = text[:begin] + section + text[end + len(DOCS_END):]
    else:
        raise BenchError(f"{path} has only one of {DOCS_BEGIN} and {DOCS_END}, or them in the wrong order; "
                         f"fix the markers first.")
    with open(path, "w") as f:
        f.write(text)


# --- main ---------------------------------------------------------------------------------------

def run_benchmark(options, variants):
    """Check the whole plan, then run what is not done yet; return the failure messages."""
    check_config_names("algs", sorted({variant.alg for variant in variants}), "--algs/--variant")
    check_config_names("envs", options.envs, "--envs")
    jobs = make_jobs(options, variants)
    check_job_configs(jobs)
    pending = jobs_to_run(jobs)
    print(f"{len(jobs) - len(pending)} of {len(jobs)} runs already completed; running {len(pending)} "
          f"with {options.workers} at a time.", flush=True)
    return run_jobs(pending, options.workers)


def report(options, variants, argv):
    """Print the table of everything completed under --out, and write it into --write-docs."""
    out = repo_path(options.out)
    groups = collect_results(out)
    if not groups:
        raise BenchError(f"No completed runs with a test return under {out}.")
    table = results_table(groups, [variant.name for variant in variants], options.envs)
    print("\n" + table)
    if options.write_docs:
        write_docs(repo_path(options.write_docs), docs_section(table, groups, argv))
        print(f"\nwrote the table into {repo_path(options.write_docs)}")


def main(argv=None):
    """Returns the exit code: 0; 1 if a run failed; 2 for a problem with the arguments or results; 130: Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parse_args(argv)
    try:
        variants = table_variants(options)
        failures = [] if options.report_only else run_benchmark(options, variants)
        if failures:
            print("\nfailed runs:\n" + "\n".join(failures), file=sys.stderr)
        report(options, variants, argv)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the unfinished runs were stopped; the next run clears and repeats them.",
              file=sys.stderr)
        return 130
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
