"""What keeping a run safe costs: the time and size of a full-state checkpoint, and a run's peak memory.

    python bench/run_costs.py checkpoint [qmix sale_mb]   # full replay buffer, default LBF task
    python bench/run_costs.py memory [--src DIR] [-- key=value ...]

`checkpoint` builds each algorithm's run as `src/main.py --config=<alg> --env-config=lbf` does,
fills its replay buffer to `buffer_size` with copies of real episodes (size, not content, sets the
cost), then times three full-state checkpoints (models, buffer, runner and RNG states, config).

`memory` runs `src/main.py --config=qmix --env-config=mamujoco with t_max=2000 save_model=False`
(plus any key=value given) in a subprocess and prints its peak resident memory (ru_maxrss).
`--src` runs another checkout's `src/` (e.g. an older commit, to compare).
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))


class _Quiet:
    def __init__(self):
        self.console_logger = SimpleNamespace(info=lambda *a, **k: None)

    def log_stat(self, *_):
        pass

    def log_checkpoint(self, *_):
        pass

    def state_dict(self):
        return {}


def checkpoint_cost(alg, repeats=3):
    """(seconds per full-state checkpoint, MB on disk, buffer episodes) for `alg` on default LBF."""
    from components.episode_buffer import ReplayBuffer
    from controllers import REGISTRY as mac_registry
    from learners import REGISTRY as learner_registry
    from run import CheckpointSaver, Progress, apply_env_info, build_scheme
    from run_config import build_config
    from runners import REGISTRY as runner_registry

    config = build_config(alg, "lbf", [("seed", 1)])
    args = SimpleNamespace(**config, device="cpu")
    runner = runner_registry[args.runner](args, _Quiet())
    info = runner.get_env_info()
    apply_env_info(args, info)
    scheme, groups, preprocess = build_scheme(info, args)
    buffer = ReplayBuffer(scheme, groups, args.buffer_size, info["episode_limit"] + 1, preprocess=preprocess)
    mac = mac_registry[args.mac](buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    learner = learner_registry[args.learner](mac, buffer.scheme, _Quiet(), args)
    episodes = [runner.run(test_mode=False) for _ in range(8)]
    for i in range(args.buffer_size):
        buffer.insert_episode_batch(episodes[i % len(episodes)])
    learner.train(buffer.sample(args.batch_size), runner.t_env, 0)  # optimiser state exists
    folder = tempfile.mkdtemp(prefix="ckpt_cost_")
    try:
        saver = CheckpointSaver(args, config, folder, runner, learner, buffer, Progress(), _Quiet())
        times = []
        for step in range(repeats):
            runner.t_env = step + 1
            start = time.perf_counter()
            saver.save(full_state=True)
            times.append(time.perf_counter() - start)
        newest = os.path.join(folder, str(repeats))
        size = sum(os.path.getsize(os.path.join(newest, name)) for name in os.listdir(newest))
    finally:
        runner.close_env()
        shutil.rmtree(folder, ignore_errors=True)
    return sorted(times)[len(times) // 2], size / 1e6, args.buffer_size


def peak_memory(src, extra):
    """Peak RSS (MB) of a short default QMIX run on MaMuJoCo, and its wall time (s)."""
    results = tempfile.mkdtemp(prefix="mem_cost_")
    command = [sys.executable, os.path.join(src, "main.py"), "--config=qmix", "--env-config=mamujoco", "with",
               "t_max=2000", "save_model=False", "test_nepisode=1", f"local_results_path={results}", *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    shutil.rmtree(results, ignore_errors=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["checkpoint", "memory"])
    parser.add_argument("rest", nargs="*", help="checkpoint: algorithms; memory: key=value overrides")
    parser.add_argument("--src", default=os.path.join(REPO, "src"), help="memory: the src/ to run")
    options = parser.parse_args()
    if options.what == "checkpoint":
        import torch
        torch.set_num_threads(1)
        print(f"{'algorithm':10s} {'buffer (episodes)':>18s} {'s per checkpoint':>17s} {'MB on disk':>11s}")
        for alg in options.rest or ["qmix", "sale_mb"]:
            seconds, megabytes, episodes = checkpoint_cost(alg)
            print(f"{alg:10s} {episodes:18d} {seconds:17.2f} {megabytes:11.1f}", flush=True)
    else:
        peak, wall = peak_memory(options.src, options.rest)
        print(f"src={options.src} peak RSS {peak:.0f} MB, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
