"""Statistics of a comparison, as rliable (Agarwal et al., 2021) defines them; this file is glue.

Scores are arranged as rliable wants them: `[runs, tasks]` (or `[runs, tasks, points]` for learning
curves). Intervals are 95% percentile intervals of a stratified bootstrap (runs resampled within
each task), from `rliable.library.get_interval_estimates`, seeded (see `interval_estimates`).
"""
import warnings

import numpy as np
import scipy.stats
from rliable import library, metrics

CI_SIZE = 0.95


def interval_estimates(score_dict, func, reps, seed):
    """rliable's point estimates and 95% stratified-bootstrap intervals, reproducible by `seed`.

    rliable's StratifiedBootstrap draws its indices from NumPy's global generator whatever
    `random_state` says, so that generator is seeded for the call (and put back afterwards).
    """
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():   # arch, under rliable, asks for a Generator instead
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            return library.get_interval_estimates(score_dict, func, reps=reps, confidence_interval_size=CI_SIZE,
                                                  random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(global_state)


def per_seed_scores(run):
    """final (last test), best (highest test) and auc (area under the test curve over its env
    steps, divided by their span: the average test return across training) of one Run (as its
    report computed them, for a run read from a report's runs.csv)."""
    if run.scores is not None:   # read from a report's runs.csv
        return dict(run.scores)
    steps, returns = run.steps, run.returns
    span = steps[-1] - steps[0]
    auc = float(np.trapezoid(returns, steps) / span) if span > 0 else float(returns[-1])
    return {"final": float(returns[-1]), "best": float(returns.max()), "auc": auc}


def iqm_and_mean(score_dict, reps, seed):
    """{key: [runs, tasks]} -> {key: {"iqm": (point, low, high), "mean": (point, low, high)}}."""
    def aggregates(scores):
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])

    points, intervals = interval_estimates(score_dict, aggregates, reps, seed)
    return {key: {name: (points[key][i], intervals[key][0, i], intervals[key][1, i])
                  for i, name in enumerate(("iqm", "mean"))} for key in score_dict}


def iqm_curves(curve_dict, reps, seed):
    """{key: [runs, tasks, points]} -> {key: (iqm [points], low [points], high [points])}."""
    def iqm_per_point(scores):   # metrics.aggregate_iqm at every point, in one call
        return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)

    points, intervals = interval_estimates(curve_dict, iqm_per_point, reps, seed)
    return {key: (points[key], intervals[key][0], intervals[key][1]) for key in curve_dict}


def probability_of_improvement(pairs, reps, seed):
    """{(x, y): ([runs_x, tasks], [runs_y, tasks])} -> {(x, y): (P(X > Y), low, high)}."""
    def improvement(scores_x, scores_y):
        return np.array([metrics.probability_of_improvement(scores_x, scores_y)])

    points, intervals = interval_estimates(
        {f"{x}>{y}": list(scores) for (x, y), scores in pairs.items()}, improvement, reps, seed)
    return {(x, y): (points[f"{x}>{y}"][0], intervals[f"{x}>{y}"][0, 0], intervals[f"{x}>{y}"][1, 0])
            for x, y in pairs}


def min_max_normalise(task_scores):
    """{task: {alg: [runs]}} -> the same, each task scaled by the lowest and highest run score
    any algorithm reached on it (0 = lowest, 1 = highest; 0 for all when they are equal)."""
    normalised = {}
    for task, by_alg in task_scores.items():
        values = np.concatenate([np.asarray(v, dtype=float) for v in by_alg.values()])
        low, span = values.min(), values.max() - values.min()
        normalised[task] = {alg: (np.asarray(v, dtype=float) - low) / span if span > 0 else np.zeros(len(v))
                            for alg, v in by_alg.items()}
    return normalised
