"""How many seeds a planned confirmation needs: the chance that A's 95% interval lies above B's, for
each number of seeds per algorithm, if each algorithm's seeds behave like the ones already measured.

    python bench/seeds_needed.py REPORT sale_mb qmix_gru [--env ENV] [--score final] [--aggregate iqm]
        [--n 10 20 30 40] [--sims 2000] [--reps 2000] [--seed 0] [--shift 0.01]

Reads a report's per-seed `runs.csv` (as bench/interval_margin.py does). For each n, it draws `--sims`
imagined confirmations: n scores of A and n of B, each drawn with replacement from that algorithm's
measured per-seed scores (the measured seeds stand in for the population of seeds), and applies the
rule the confirmations use: A's low end above B's high end, each a 95% percentile-bootstrap interval
of the aggregate over runs (for one task, the interval the report's stratified bootstrap gives; here
from `scipy.stats.bootstrap`, batched over the draws, as rliable's one call per interval would take
hours). It prints the share of draws where the intervals are apart, with its 95% Wilson interval.

The estimate is only as good as the measured seeds: a few seeds describe a distribution's tails
poorly, so read it from more than one set of them. It also takes the measured gap for the true one;
`--shift D` subtracts D from each of A's scores, to show how the chance falls if the true gap is smaller.
"""
import argparse

import numpy as np
from scipy.stats import binomtest, bootstrap, trim_mean

from interval_margin import add_pair_arguments, per_seed_scores   # puts src/ on the path


AGGREGATES = {"iqm": lambda s, axis: trim_mean(s, 0.25, axis=axis),   # rliable's aggregate_iqm
              "mean": lambda s, axis: np.mean(s, axis=axis)}


def intervals(samples, aggregate, reps, rng):
    """95% percentile-bootstrap interval of the aggregate of each row of `samples` [draws, runs]."""
    ci = bootstrap((samples,), AGGREGATES[aggregate], axis=-1, vectorized=True, method="percentile",
                   confidence_level=0.95, n_resamples=reps, batch=100, random_state=rng).confidence_interval
    return ci.low, ci.high


def chance_apart(scores_a, scores_b, n, sims, reps, aggregate, rng):
    """In how many of `sims` draws of n seeds each A's interval lies above B's."""
    low_a, _ = intervals(rng.choice(scores_a, size=(sims, n), replace=True), aggregate, reps, rng)
    _, high_b = intervals(rng.choice(scores_b, size=(sims, n), replace=True), aggregate, reps, rng)
    return int((low_a > high_b).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser)
    parser.add_argument("--n", type=int, nargs="+", default=[10, 20, 30, 40, 50, 60],
                        help="seeds per algorithm in the imagined confirmation")
    parser.add_argument("--sims", type=int, default=2000, help="imagined confirmations for each n")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications of each interval")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draws")
    parser.add_argument("--shift", type=float, default=0.0, help="subtracted from each of A's scores")
    options = parser.parse_args()
    if min(options.n) < 2 or options.sims < 1:
        parser.error("--n needs at least 2 seeds and --sims at least 1 draw")
    scores_a = per_seed_scores(options.report, options.a, options.score, options.env)[:, 0] - options.shift
    scores_b = per_seed_scores(options.report, options.b, options.score, options.env)[:, 0]
    print(f"{options.aggregate} of {options.score}, drawn from {len(scores_a)} measured {options.a} seeds "
          f"(mean {scores_a.mean():.3f}) and {len(scores_b)} {options.b} seeds (mean {scores_b.mean():.3f}); "
          f"{options.sims} draws per n, {options.reps} bootstrap replications")
    for n in options.n:   # draws seeded by (--seed, n): each n's figure is the same whichever others are asked
        rng = np.random.default_rng([options.seed, n])
        apart = chance_apart(scores_a, scores_b, n, options.sims, options.reps, options.aggregate, rng)
        ci = binomtest(apart, options.sims).proportion_ci(confidence_level=0.95, method="wilson")
        print(f"n {n:4d}: apart in {apart:4d} of {options.sims} draws, chance {apart / options.sims:.2f} "
              f"[{ci.low:.2f}, {ci.high:.2f}]", flush=True)


if __name__ == "__main__":
    main()
