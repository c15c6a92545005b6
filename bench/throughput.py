"""Training throughput: env steps per second and the share of wall time inside the env's step.

Trains QMIX with its default config (feed-forward agents, episode runner, one update per episode)
on Foraging-8x8-2p-3f-v3 for a fixed number of env steps, timing every call of the raw LBF
`ForagingEnv.step` (our wrapper's own work counts as framework time).

    python bench/throughput.py [--steps 50000] [--alg qmix] [--key lbforaging:Foraging-8x8-2p-3f-v3]

Reference (shared/docs/benchmarks.md): EPyMARL spends 15% of its wall time in env.step here
(wall / env.step = 6.7) at 240-410 steps/s. Our target: wall / env.step <= 2.5.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50000, help="training env steps (t_max)")
    parser.add_argument("--alg", default="qmix", help="algorithm config")
    parser.add_argument("--key", default="lbforaging:Foraging-8x8-2p-3f-v3", help="env_args.key")
    parser.add_argument("--runner", default="episode", help="episode or parallel")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch_threads of the run")
    options = parser.parse_args()
    torch.set_num_threads(1)

    from lbforaging.foraging.environment import ForagingEnv
    import main as entry

    env_time = [0.0, 0]
    raw_step = ForagingEnv.step

    def timed_step(self, actions):
        start = time.perf_counter()
        result = raw_step(self, actions)
        env_time[0] += time.perf_counter() - start
        env_time[1] += 1
        return result

    ForagingEnv.step = timed_step
    with tempfile.TemporaryDirectory() as results:
        argv = [f"--config={options.alg}", "--env-config=gymma", "with", f"env_args.key={options.key}",
                f"t_max={options.steps}", f"seed={options.seed}", f"local_results_path={results}",
                f"runner={options.runner}", f"torch_threads={options.threads}", "test_interval=1000000000", "log_interval=1000000000"]
        start = time.perf_counter()
        code = entry.main(argv)
        wall = time.perf_counter() - start
    if code != 0:
        sys.exit(code)
    print(f"alg={options.alg} env={options.key} runner={options.runner} steps={options.steps}")
    print(f"wall time            {wall:8.1f} s")
    print(f"env.step calls       {env_time[1]:8d}")
    print(f"time in env.step     {env_time[0]:8.1f} s  ({100 * env_time[0] / wall:.1f}% of wall time)")
    print(f"env steps per second {env_time[1] / wall:8.0f}")
    print(f"wall / env.step      {wall / env_time[0]:8.2f}  (EPyMARL: 6.7; target <= 2.5)")


if __name__ == "__main__":
    main()
