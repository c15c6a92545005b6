"""Cost of one learner update: milliseconds per `learner.train` on a fixed batch of real episodes.

Collects `--batch` episodes of an LBF task with the episode runner (the untrained agents' ε-greedy
policy), then times `--repeats` updates of each algorithm's learner on that same batch, one torch
thread. Extra `key=value` settings after an algorithm's name apply to it alone:

    python bench/update_cost.py [--key Foraging-2s-8x8-2p-2f-coop-v3] [--batch 32] [--repeats 10]
        qmix sale_mb "sale_mb imagination_starts=null" sale_mb_no_wm

Imagination runs from the first update (`wm_warmup` is set to 0), so the figure is the cost after
warm-up. `--device cuda` times the updates on the GPU (batch and learner there, as with
`use_cuda=True`; `--device cpu,cuda` does both in one invocation). Compare figures from one
invocation: the machines are shared and noisy.
"""
import argparse
import os
import random
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from components.episode_buffer import ReplayBuffer  # noqa: E402
from controllers import REGISTRY as mac_registry  # noqa: E402
from learners import REGISTRY as learner_registry  # noqa: E402
from run import apply_env_info, build_scheme  # noqa: E402
from runners import REGISTRY as runner_registry  # noqa: E402
from run_config import build_config, parse_overrides  # noqa: E402


class SilentLogger:
    def log_stat(self, key, value, t):
        pass


def build(alg_spec, key, seed):
    """(args, runner, env info, buffer scheme pieces) for 'alg key=value ...'."""
    name, *settings = alg_spec.split()
    config = build_config(name, "lbf", [("env_args.key", f"lbforaging:{key}"), ("seed", seed)]
                          + parse_overrides(settings))
    if "wm_warmup" in config:
        config["wm_warmup"] = 0
    args = SimpleNamespace(**config, device="cpu")
    runner = runner_registry["episode"](args, SilentLogger())
    info = runner.get_env_info()
    apply_env_info(args, info)
    scheme, groups, preprocess = build_scheme(info, args)
    return args, runner, info, scheme, groups, preprocess


def learner_and_batch(alg_spec, key, batch_size, seed=1, device="cpu"):
    """A fresh learner of 'alg key=value ...' and a batch of ``batch_size`` episodes collected on the
    CPU by its untrained agents (seeded as `src/run.py` seeds a run: the same episodes for a given
    seed on any device), both then moved to ``device`` as `use_cuda=True` moves them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    args, runner, info, scheme, groups, preprocess = build(alg_spec, key, seed)
    buffer = ReplayBuffer(scheme, groups, batch_size, info["episode_limit"] + 1, preprocess=preprocess,
                          device="cpu")
    mac = mac_registry[args.mac](buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    learner = learner_registry[args.learner](mac, buffer.scheme, SilentLogger(), args)
    for _ in range(batch_size):
        buffer.insert_episode_batch(runner.run(test_mode=False))
    runner.close_env()
    batch = buffer.sample(batch_size)
    if device != "cpu":
        args.device, args.use_cuda = device, True
        learner.cuda()
        batch.to(device)
    return learner, batch


def time_updates(alg_spec, key, batch_size, repeats, seed=1, device="cpu"):
    learner, batch = learner_and_batch(alg_spec, key, batch_size, seed, device)
    synchronise = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    learner.train(batch, 0, 0)  # first call: allocations, lazy initialisation
    synchronise()
    start = time.perf_counter()
    for _ in range(repeats):
        learner.train(batch, 0, 0)
    synchronise()
    return (time.perf_counter() - start) / repeats * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("algs", nargs="*", default=["qmix", "sale_mb", "sale_mb imagination_starts=null",
                                                    "sale_mb_no_wm", "sale_mb_no_sale"],
                        help="algorithm configs, each optionally followed by key=value settings")
    parser.add_argument("--key", default="Foraging-2s-8x8-2p-2f-coop-v3", help="LBF task id")
    parser.add_argument("--batch", type=int, default=32, help="episodes per update")
    parser.add_argument("--repeats", type=int, default=10, help="timed updates per algorithm")
    parser.add_argument("--device", default="cpu",
                        help="where the updates run: cpu, cuda, or both in one invocation (cpu,cuda)")
    options = parser.parse_args()
    devices = options.device.split(",")
    if any(d != "cpu" for d in devices) and not torch.cuda.is_available():
        parser.error(f"--device {options.device}: torch sees no CUDA device here; use --device cpu")
    torch.set_num_threads(1)

    print(f"task={options.key} batch={options.batch} episodes, {options.repeats} updates each, 1 thread")
    print(f"{'algorithm':45s} " + " ".join(f"{'ms per update (' + d + ')':>24s}" for d in devices))
    for alg_spec in options.algs:
        figures = [time_updates(alg_spec, options.key, options.batch, options.repeats, device=d) for d in devices]
        print(f"{alg_spec:45s} " + " ".join(f"{f:24.1f}" for f in figures), flush=True)


if __name__ == "__main__":
    main()
