"""Training throughput: env steps per second and where the wall time goes.

Trains an algorithm (default: QMIX with its default config: feed-forward agents, episode runner,
one update of 32 episodes per episode) on Foraging-8x8-2p-3f-v3 for a fixed number of env steps
through the real entry point, timing every call of the raw LBF `ForagingEnv.step` (our wrapper's
own work counts as framework time), of the learner's `train`, and of the controller's
`select_actions`.

    python bench/throughput.py [--steps 50000] [--alg qmix] [--key lbforaging:Foraging-8x8-2p-3f-v3]
                               [--threads 1]

Reference (shared/docs/benchmarks.md): EPyMARL spends 15% of its wall time in env.step here
(wall / env.step = 6.7) at 240-410 steps/s. Our target: wall / env.step <= 2.5.
Only the episode runner is timed in detail (parallel workers are other processes).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))


def timed(cls, name, totals, counts, label):
    """Wrap `cls.name` so that each call adds its duration to `totals[label]`."""
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
            counts[label] = counts.get(label, 0) + 1

    setattr(cls, name, wrapper)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50000, help="training env steps (t_max)")
    parser.add_argument("--alg", default="qmix", help="algorithm config")
    parser.add_argument("--key", default="lbforaging:Foraging-8x8-2p-3f-v3", help="env_args.key")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch_threads of the run")
    options = parser.parse_args()

    from lbforaging.foraging.environment import ForagingEnv
    from controllers.basic_controller import BasicMAC
    from learners import REGISTRY as learners
    import main as entry

    totals, counts = {}, {}
    timed(ForagingEnv, "step", totals, counts, "env.step (raw LBF)")
    timed(ForagingEnv, "reset", totals, counts, "env.reset (raw LBF)")
    timed(BasicMAC, "select_actions", totals, counts, "action selection")
    from run_config import build_config
    learner_cls = learners[build_config(options.alg, "gymma", [], check_names=False)["learner"]]
    timed(learner_cls, "train", totals, counts, "learner updates")

    with tempfile.TemporaryDirectory() as results:
        argv = [f"--config={options.alg}", "--env-config=gymma", "with", f"env_args.key={options.key}",
                f"t_max={options.steps}", f"seed={options.seed}", f"local_results_path={results}",
                f"torch_threads={options.threads}", "test_interval=1000000000", "log_interval=1000000000",
                "save_model=False"]
        start = time.perf_counter()
        code = entry.main(argv)
        wall = time.perf_counter() - start
    if code != 0:
        sys.exit(code)

    env_time = totals["env.step (raw LBF)"]
    steps = counts["env.step (raw LBF)"]
    print(f"\nalg={options.alg} env={options.key} steps={options.steps} threads={options.threads}")
    print(f"{'part':28s} {'seconds':>8s} {'share':>7s} {'per env step':>13s}")
    for label, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{label:28s} {seconds:8.2f} {100 * seconds / wall:6.1f}% {1e6 * seconds / steps:10.0f} us")
    other = wall - sum(totals.values())
    print(f"{'everything else':28s} {other:8.2f} {100 * other / wall:6.1f}% {1e6 * other / steps:10.0f} us")
    print(f"{'wall time':28s} {wall:8.2f}")
    print(f"env.step calls (train+test) {steps:8d}   learner updates {counts.get('learner updates', 0)}")
    print(f"env steps per second        {steps / wall:8.0f}")
    print(f"wall / env.step             {wall / env_time:8.2f}   (EPyMARL: 6.7; target <= 2.5)")


if __name__ == "__main__":
    main()
