"""Env step rates: a random policy through our wrappers, and inside QMIX training.

    python bench/env_rates.py [--steps 5000] [--train-steps 5000] [--only lbf,mamujoco,smax]

Random policy: uniformly random available actions, resets included, through the registry
constructor exactly as the runners build each env. Inside training: the real entry point trains
QMIX (default config, episode runner) for `--train-steps` env steps and we report env steps per
second of wall time (acting, learning and bookkeeping included; start-up excluded).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import numpy as np  # noqa: E402

CASES = {
    "lbf": [("lbf_2s_8x8_2p_2f_coop", {}), ("lbf_10x10_4p_3f", {}), ("lbf_10x10_3p_5f", {}),
            ("lbf_2s_10x10_3p_3f", {})],
    "mamujoco": [("mamujoco", {"env_args.scenario": "HalfCheetah", "env_args.agent_conf": "6x1"}),
                 ("mamujoco", {"env_args.scenario": "Hopper", "env_args.agent_conf": "3x1"}),
                 ("mamujoco", {"env_args.scenario": "Ant", "env_args.agent_conf": "8x1"}),
                 ("mamujoco", {"env_args.scenario": "Walker2d", "env_args.agent_conf": "6x1"})],
    "smax": [("smax", {"env_args.map_name": name}) for name in ("smacv2_5_units", "smacv2_10_units",
                                                                 "smacv2_20_units")],
}


def label(env_config, overrides):
    return env_config + "".join(f" {k.split('.')[-1]}={v}" for k, v in overrides.items())


def random_rate(env_config, overrides, steps, seed=0):
    from envs import REGISTRY
    from run_config import build_config

    config = build_config("qmix", env_config, list(overrides.items()) + [("seed", seed)])
    env = REGISTRY[config["env"]](**config["env_args"], common_reward=True, reward_scalarisation="sum")
    rng = np.random.default_rng(seed)
    env.reset()
    env.step([0] * env.n_agents)  # compile / warm up outside the timing
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        avail = np.asarray(env.get_avail_actions())
        actions = [int(rng.choice(np.flatnonzero(row))) for row in avail]
        _, _, terminated, truncated, _ = env.step(actions)
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def training_rate(env_config, overrides, steps):
    import main as entry
    from utils.logging import Logger

    marks = {}
    original = Logger.log_stat

    def log_stat(self, key, value, t):  # the first runner stat marks the end of start-up
        marks.setdefault("start", (time.perf_counter(), t))
        marks["end"] = (time.perf_counter(), t)
        return original(self, key, value, t)

    Logger.log_stat = log_stat
    with tempfile.TemporaryDirectory() as results:
        argv = [f"--config=qmix", f"--env-config={env_config}", "with", f"t_max={steps}",
                f"local_results_path={results}", "test_interval=1000000000", "buffer_size=500",
                "runner_log_interval=1", "log_interval=1000000000", "seed=0", "save_model=False",
                *[f"{k}={v}" for k, v in overrides.items()]]
        code = entry.main(argv)
    Logger.log_stat = original
    if code != 0:
        raise SystemExit(code)
    (t0, s0), (t1, s1) = marks["start"], marks["end"]
    return (s1 - s0) / (t1 - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="random-policy steps per env")
    parser.add_argument("--train-steps", type=int, default=5000, help="QMIX training steps per env (0: skip)")
    parser.add_argument("--only", default="lbf,mamujoco,smax", help="comma-separated groups")
    options = parser.parse_args()
    import torch
    torch.set_num_threads(1)

    rows = []
    for group in options.only.split(","):
        for env_config, overrides in CASES[group]:
            random = random_rate(env_config, overrides, options.steps)
            train = training_rate(env_config, overrides, options.train_steps) if options.train_steps else float("nan")
            rows.append((label(env_config, overrides), random, train))
            print(f"{rows[-1][0]:50s} random {random:8.0f} steps/s   in QMIX training {train:6.0f} steps/s", flush=True)
    print("\n| env | random policy (steps/s) | inside QMIX training (steps/s) |\n|---|---|---|")
    for name, random, train in rows:
        print(f"| {name} | {random:,.0f} | {train:,.0f} |")


if __name__ == "__main__":
    main()
