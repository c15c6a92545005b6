"""How firmly two algorithms' 95% intervals are apart: the gap between A's lower end and B's upper
end for one score, over several bootstrap seeds (the report computes its intervals with one).

    python src/compare.py --report sale_mb_evidence --envs lbf_10x10_4p_3f --algs sale_mb,qmix_gru --out DIR
    python bench/interval_margin.py DIR sale_mb qmix_gru [--score final] [--aggregate iqm]
        [--env ENV] [--seeds 20] [--reps 2000 10000]

Reads the report's per-seed `runs.csv` (one env, or `--env`), recomputes the stratified-bootstrap
interval of each algorithm's aggregate exactly as the report does (`comparison.stats`) with
bootstrap seeds 0..N-1, and prints, for each number of replications, the smallest, median and
largest gap (A's low - B's high; > 0: apart) and in how many of the seeds the intervals are apart.
Issue 9's learning target asks for non-overlapping intervals: a gap that changes sign with the
bootstrap seed is not one.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import numpy as np  # noqa: E402

from comparison import stats  # noqa: E402


def per_seed_scores(folder, alg, score, env=None):
    path = os.path.join(folder, "runs.csv")
    if not os.path.isfile(path):
        sys.exit(f"error: no {path}: write the report first (python src/compare.py --report ... --out {folder})")
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["alg"] == alg]
    envs = sorted({row["env"] for row in rows})
    if env is None and len(envs) > 1:
        sys.exit(f"error: {alg} has runs on several envs in {path} ({', '.join(envs)}): choose one with --env")
    rows = [row for row in rows if env is None or row["env"] == env]
    if not rows:
        sys.exit(f"error: no runs of {alg}{' on ' + env if env else ''} in {path}")
    return np.array([[float(row[score])] for row in rows])


def gaps(scores_a, scores_b, aggregate, reps, seeds):
    """A's lower end minus B's upper end, for bootstrap seeds 0..seeds-1."""
    out = []
    for seed in range(seeds):
        low = stats.iqm_and_mean({"a": scores_a}, reps, seed)["a"][aggregate][1]
        high = stats.iqm_and_mean({"b": scores_b}, reps, seed)["b"][aggregate][2]
        out.append(low - high)
    return np.array(out)


def add_pair_arguments(parser):
    """The report, the two algorithms and the score compared: what this script and seeds_needed.py ask."""
    parser.add_argument("report", help="a report folder (compare.py --report ... --out DIR)")
    parser.add_argument("a", help="the algorithm expected above")
    parser.add_argument("b", help="the algorithm expected below")
    parser.add_argument("--score", default="final", choices=["final", "best", "auc"])
    parser.add_argument("--aggregate", default="iqm", choices=["iqm", "mean"])
    parser.add_argument("--env", help="the env, when the report holds several")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser)
    parser.add_argument("--seeds", type=int, default=20, help="bootstrap seeds 0..N-1")
    parser.add_argument("--reps", type=int, nargs="+", default=[2000, 10000], help="bootstrap replications")
    options = parser.parse_args()
    scores_a = per_seed_scores(options.report, options.a, options.score, options.env)
    scores_b = per_seed_scores(options.report, options.b, options.score, options.env)
    print(f"{options.aggregate} of {options.score}: {options.a} ({len(scores_a)} runs) low end - "
          f"{options.b} ({len(scores_b)} runs) high end, bootstrap seeds 0-{options.seeds - 1}")
    for reps in options.reps:
        g = gaps(scores_a, scores_b, options.aggregate, reps, options.seeds)
        print(f"reps {reps:6d}: gap min {g.min():+.4f} median {np.median(g):+.4f} max {g.max():+.4f}; "
              f"apart in {int((g > 0).sum())} of {options.seeds}", flush=True)


if __name__ == "__main__":
    main()
