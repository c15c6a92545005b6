"""What running the target agents' Q head at the greedy actions only saves: ms per SALE-MB update
with it and with the full head (every action, then the greedy ones gathered: the previous path,
bitwise the same parameters), in one process, alternating rounds on one fixed batch.

    python bench/target_head_cost.py [--batch 32] [--rounds 12] [--updates 8] [settings for sale_mb ...]

Settings (`key=value`) apply to sale_mb, e.g. `model_update_interval=1`.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import torch  # noqa: E402

from modules.agents.sale_agent import SALEAgent  # noqa: E402
from update_cost import learner_and_batch  # noqa: E402

GREEDY_ONLY = SALEAgent.q_values


def full_head(self, h, obs, actions=None):
    q = GREEDY_ONLY(self, h, obs)
    return q if actions is None else torch.gather(q, -1, actions)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", help="key=value settings of sale_mb")
    parser.add_argument("--key", default="Foraging-2s-8x8-2p-2f-coop-v3", help="LBF task id")
    parser.add_argument("--batch", type=int, default=32, help="episodes per update")
    parser.add_argument("--rounds", type=int, default=12, help="rounds per variant (alternating)")
    parser.add_argument("--updates", type=int, default=8, help="updates per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    learner, batch = learner_and_batch(" ".join(["sale_mb", *args.settings]), args.key, args.batch, seed=3)
    for warmup in range(3):
        learner.train(batch, warmup, warmup)
    variants = {"full target head": full_head, "greedy actions only": GREEDY_ONLY}
    times, step = {name: [] for name in variants}, 3
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            SALEAgent.q_values = variants[name]
            start = time.perf_counter()
            for _ in range(args.updates):
                learner.train(batch, step, step)
                step += 1
            times[name].append((time.perf_counter() - start) / args.updates * 1e3)
    SALEAgent.q_values = GREEDY_ONLY
    print(f"task={args.key} batch={args.batch} episodes, {args.rounds} rounds x {args.updates} updates, 1 thread")
    for name, values in times.items():
        print(f"{name:<22} median {statistics.median(values):7.1f} ms per update")
    before, after = (statistics.median(times[name]) for name in variants)
    print(f"saved: {100 * (before - after) / before:.1f}%")


if __name__ == "__main__":
    main()
