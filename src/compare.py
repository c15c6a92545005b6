"""Compare algorithms side by side: run a grid of configs x env configs x seeds, then report it.

    python src/compare.py --configs=sale_mb,qmix,vdn --env-configs=lbf --seeds=3 --name=NAME \\
        [--workers=N | --ray[=ADDRESS]] [--dry-run] [--retry-failed] with t_max=400000
    python src/compare.py --grid=grid.yaml [--ray=auto]          # the grid in a yaml file
    python src/compare.py --report NAME [more names or results folders ...] [--out DIR]

Every cell is one process of `src/main.py` with its own Sacred run, in
`results/comparisons/<name>/cells/<alg>__<env>__seed<seed>/`; a rerun of the same command skips
finished cells, resumes interrupted ones from their checkpoints and leaves failed ones alone unless
`--retry-failed`; with a larger t_max and `--extend` finished cells go on to it. The report
(report.md, table.csv, runs.csv, curves.png, aggregates.png) goes to `results/comparisons/<name>/`.
Its statistics: see src/comparison/report.py.
"""
import argparse
import functools
import importlib.util
import os
import signal
import sys

SRC_DIR = os.path.dirname(os.path.abspath(__file__))
if SRC_DIR not in sys.path:
    sys.path.insert(0, SRC_DIR)

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from experiment import resolve_path  # noqa: E402
from run_config import ConfigError  # noqa: E402

COMPARISONS_DIR = "results/comparisons"


def parser():
    p = argparse.ArgumentParser(
        prog="python src/compare.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a grid of algorithms x env configs x seeds through src/main.py, then report it.",
        epilog="Everything after 'with' is passed to every cell as key=value overrides, as in main.py.")
    grid = p.add_argument_group("grid")
    grid.add_argument("--configs", help="algorithm configs, comma-separated (src/config/algs/)")
    grid.add_argument("--variant", action="append", default=[], metavar="'NAME=CONFIG k=v ...'",
                      help="a named algorithm variant: a config with overrides (repeatable)")
    grid.add_argument("--env-configs", help="env configs, comma-separated (src/config/envs/)")
    grid.add_argument("--env-variant", action="append", default=[], metavar="'NAME=ENV_CONFIG k=v ...'",
                      help="a named env variant: an env config with overrides (repeatable)")
    grid.add_argument("--seeds", default="1", help="a count (3: seeds 1-3), a list (4,8) or a range (10-12)")
    grid.add_argument("--grid", metavar="FILE", help="a yaml file holding the grid (see src/comparison/grid.py)")
    grid.add_argument("--name", help="the comparison's name: its folder under --comparisons-dir")
    grid.add_argument("--comparisons-dir", default=COMPARISONS_DIR,
                      help=f"where comparisons live (default {COMPARISONS_DIR}, from the repository root)")
    run = p.add_argument_group("running")
    run.add_argument("--workers", type=int, help="local processes at once (default: free cores)")
    run.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run cells as Ray tasks. No ADDRESS: join RAY_ADDRESS, else the Ray instance "
                          "`ray start` began on this machine, else start one; 'auto' or 'ray://head:10001' "
                          "joins that cluster")
    run.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per cell on Ray (default 1)")
    run.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per cell on Ray (fractions allowed; "
                     "add 'with use_cuda=True')")
    run.add_argument("--dry-run", action="store_true", help="print the cells and what a run would do with each")
    run.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    run.add_argument("--extend", action="store_true",
                     help="take finished cells whose final checkpoint is below t_max (raised) on to it")
    run.add_argument("--no-report", action="store_true", help="run the grid without writing the report")
    rep = p.add_argument_group("report")
    rep.add_argument("--report", nargs="+", metavar="NAME_OR_DIR",
                     help="only report: comparison names or results folders holding Sacred runs")
    rep.add_argument("--out", help="report folder (default: the comparison's folder)")
    rep.add_argument("--envs", type=lambda text: text.split(","),
                     help="report these envs only, comma-separated (the report's env names)")
    rep.add_argument("--algs", type=lambda text: text.split(","),
                     help="report these algorithms only, comma-separated (the report's algorithm names)")
    rep.add_argument("--baseline", metavar="ALG",
                     help="probabilities of improvement of each algorithm over this one only")
    rep.add_argument("--metric", help="the test metric (default test_return_mean, else test_total_return_mean)")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    return p


def split_with(argv):
    if "with" in argv:
        at = argv.index("with")
        return argv[:at], argv[at + 1:]
    return argv, []


def build_grid(args, shared):
    from comparison.grid import Entry, Grid, grid_from_yaml, parse_entry, parse_seeds

    if args.grid:
        grid = grid_from_yaml(args.grid)
    else:
        grid = Grid(args.name, [], [], parse_seeds(args.seeds))
    grid.algs += [Entry(n, n) for n in filter(None, (args.configs or "").split(","))]
    grid.algs += [parse_entry(text, "--variant") for text in args.variant]
    grid.envs += [Entry(n, n) for n in filter(None, (args.env_configs or "").split(","))]
    grid.envs += [parse_entry(text, "--env-variant") for text in args.env_variant]
    grid.name = args.name or grid.name
    grid.shared = (*grid.shared, *shared)
    return grid


def report_out(args, roots):
    if args.out:
        return resolve_path(args.out)
    if args.name:
        return os.path.join(resolve_path(args.comparisons_dir), args.name)
    return roots[0] if len(roots) == 1 else None


def report_roots(args):
    """A name is a comparison under --comparisons-dir; anything else must be a folder."""
    roots = []
    for item in args.report:
        named = os.path.join(resolve_path(args.comparisons_dir), item)
        root = named if os.path.isdir(named) else os.path.abspath(item)
        if not os.path.isdir(root):
            raise ConfigError(f"--report {item}: no comparison {named} and no folder {root}.")
        roots.append(root)
    return roots


def print_report(name, roots, out, args):
    from comparison.report import ReportError, write_report

    try:
        written = write_report(name, roots, out, metric=args.metric, reps=args.reps, envs=args.envs,
                               algs=args.algs, baseline=args.baseline)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with open(written["paths"]["markdown"]) as f:
        print(f.read())
    print("wrote " + ", ".join(sorted(written["paths"].values())))
    return 0


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def launch_stoppably(launch, stopper):
    """Run `launch()`; SIGINT, SIGTERM or SIGHUP meanwhile reach every running cell once (it saves a
    checkpoint and exits) and start no new cell. Returns (launch's result, the first signal or None)."""
    received = []

    def stop(signum, frame):
        received.append(signum)
        stopper.stop(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        return launch(), (received[0] if received else None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_grid(args, grid):
    from comparison import backends
    from comparison.launch import run_grid as launch

    grid_dir = os.path.join(resolve_path(args.comparisons_dir), grid.name)
    if args.ray is not None:
        stopper = backends.StopFlag()
        run_cells = functools.partial(backends.run_ray, address=args.ray or None, cpus=args.ray_cpus,
                                      gpus=args.ray_gpus, stop=stopper)
    else:
        stopper = backends.LocalProcesses()
        run_cells = functools.partial(backends.run_local, workers=args.workers or backends.free_cores(),
                                      processes=stopper)
    all_done, stopped_by = launch_stoppably(functools.partial(
        launch, grid, grid_dir, run_cells, retry_failed=args.retry_failed, dry_run=args.dry_run,
        extend=args.extend), stopper)
    if stopped_by is not None:
        print(f"stopped by {signal.Signals(stopped_by).name}: the running cells saved checkpoints; "
              f"run the same command again to resume them.", file=sys.stderr)
        return 128 + stopped_by
    code = 0 if all_done else 1
    if not args.no_report and not args.dry_run:
        out = resolve_path(args.out) if args.out else grid_dir
        code = print_report(grid.name, [grid_dir], out, args) or code
    return code


def main(argv=None):
    missing = [name for name in ("tqdm", "rliable", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: src/compare.py needs {', '.join(missing)}: pip install -e .[compare]", file=sys.stderr)
        return 2
    argv, shared = split_with(sys.argv[1:] if argv is None else list(argv))
    args = parser().parse_args(argv)
    try:
        if args.report:
            roots = report_roots(args)
            out = report_out(args, roots)
            if out is None:
                raise ConfigError("--report with several folders needs --out DIR or --name NAME for the report.")
            return print_report(args.name or os.path.basename(os.path.normpath(out)), roots, out, args)
        if args.workers is not None and args.ray is not None:
            raise ConfigError("Give --workers (local processes) or --ray (Ray tasks), not both.")
        if args.workers is not None and args.workers < 1:
            raise ConfigError(f"--workers={args.workers}: give at least 1.")
        return run_grid(args, build_grid(args, shared))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
