"""Figures of a comparison: learning curves per task and cross-task aggregates (matplotlib)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402
import numpy as np  # noqa: E402
from rliable import plot_utils  # noqa: E402

from comparison import stats  # noqa: E402


def common_steps(runs, points):
    """[points] env steps that every run covers: from the latest first test to the earliest last."""
    start = max(run.steps[0] for run in runs)
    end = min(run.steps[-1] for run in runs)
    return np.linspace(start, end, points) if end > start else np.array([end])


def learning_curves(groups, reps, seed, points=50):
    """One panel per env; per algorithm, the IQM test return over seeds against env steps, with its
    95% stratified-bootstrap band. `groups`: {(env, alg): [Run]}; runs read from a report's runs.csv
    have no curve and are left out. Returns the figure."""
    envs = sorted({env for env, _ in groups})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.0 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for alg in sorted(alg for e, alg in groups if e == env):
            runs = [run for run in groups[(env, alg)] if run.scores is None]
            if not runs:
                continue
            steps = common_steps(runs, points)
            curves = np.stack([np.interp(steps, run.steps, run.returns) for run in runs])[:, None, :]
            iqm, low, high = stats.iqm_curves({alg: curves}, reps, seed)[alg]
            (line,) = ax.plot(steps, iqm, label=f"{alg} ({len(runs)} seeds)", marker="o" if len(steps) == 1 else None)
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))   # 400k, 1M: long tick labels overlap
        ax.set_ylabel("test return (IQM, 95% CI)")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no learning curves\n(runs read from a report's runs.csv)", ha="center",
                    va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def aggregates(estimates, xlabel):
    """IQM and mean with their intervals, one row per algorithm. `estimates`: {alg: {"iqm": (point,
    low, high), "mean": (...)}} (stats.iqm_and_mean). Returns the figure."""
    names = ("iqm", "mean")
    points = {alg: np.array([est[n][0] for n in names]) for alg, est in estimates.items()}
    intervals = {alg: np.array([[est[n][1] for n in names], [est[n][2] for n in names]])
                 for alg, est in estimates.items()}
    fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=["IQM", "Mean"],
                                                algorithms=sorted(estimates), xlabel=xlabel,
                                                xlabel_y_coordinate=-0.3 if len(estimates) < 5 else -0.15)
    return fig


def save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
