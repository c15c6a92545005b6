"""Wall time per env step of SALE-MB against QMIX, default configs, same task, one process.

Trains each algorithm for ``--steps`` env steps through the real entry point, alternating the
algorithms run by run (``--rounds`` rounds of qmix then sale_mb, or of the ``--algs`` given, two or
more) so a change in the machine's load falls on all. Counts the raw LBF ``env.step`` calls of each run and times the
learner's updates, and prints per algorithm:
- wall time per env step from the first env step to the end (start-up excluded; one test
  episode at the start, none after);
- the same after update number ``wm_warmup`` of SALE-MB's config (steady state: the replay buffer
  holds a batch and SALE-MB's imagination runs; before that SALE-MB updates only its world model);
and the ratio of each later algorithm to the first, of both (issue 9's target, SALE-MB / QMIX: <= 3).

    nice python bench/wall_ratio.py [--steps 3000] [--rounds 1] [--env lbf_2s_8x8_2p_2f_coop]
                                    [--algs qmix sale_mb] [--threads 1]
    nice python bench/wall_ratio.py --algs qmix "sale_mb model_update_interval=4 rollout_depth=1"
    python bench/wall_ratio.py --algs qmix "sale_mb use_cuda=True" "sale_mb use_cuda=True act_on_cpu=False"
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))


def train_once(alg_spec, env, steps, seed, threads, steady_update):
    """One training run of 'alg key=value ...'; returns (env steps, wall s, env steps and wall s
    from the ``steady_update``-th update on)."""
    from lbforaging.foraging.environment import ForagingEnv
    from learners import REGISTRY as learners
    from run_config import build_config
    import main as entry

    alg, *settings = alg_spec.split()
    learner_cls = learners[build_config(alg, env, [], check_names=False)["learner"]]
    steps_seen, updates, first_step = [0], [], []
    original_step, original_train = ForagingEnv.step, learner_cls.train

    def counted_step(self, *args, **kwargs):
        if not first_step:
            first_step.append(time.perf_counter())
        steps_seen[0] += 1
        return original_step(self, *args, **kwargs)

    def timed_train(self, batch, t_env, episode_num):
        updates.append((time.perf_counter(), steps_seen[0]))
        return original_train(self, batch, t_env, episode_num)

    ForagingEnv.step, learner_cls.train = counted_step, timed_train
    try:
        with tempfile.TemporaryDirectory() as results:
            argv = [f"--config={alg}", f"--env-config={env}", "with", f"t_max={steps}",
                    f"seed={seed}", f"local_results_path={results}", f"torch_threads={threads}",
                    "test_interval=1000000000", "log_interval=1000000000", "test_nepisode=1",
                    "save_model=False", *settings]
            code = entry.main(argv)
            end = time.perf_counter()
    finally:
        ForagingEnv.step, learner_cls.train = original_step, original_train
    if code != 0:
        sys.exit(code)
    if len(updates) <= steady_update:
        return steps_seen[0], end - first_step[0], None, None
    steady_start, steady_steps = updates[steady_update]
    return steps_seen[0], end - first_step[0], steps_seen[0] - steady_steps, end - steady_start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="training env steps per run (t_max)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each algorithm, alternating")
    parser.add_argument("--env", default="lbf_2s_8x8_2p_2f_coop", help="env config")
    parser.add_argument("--algs", nargs="+", default=["qmix", "sale_mb"],
                        help="baseline, then one or more methods; each a config name with optional "
                             "settings: 'sale_mb rollout_depth=1'")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch_threads of the runs")
    options = parser.parse_args()
    if len(options.algs) < 2 or len(set(options.algs)) < len(options.algs):
        parser.error(f"--algs needs a baseline and at least one other, all different; got {options.algs}")

    from run_config import build_config
    steady_update = build_config("sale_mb", options.env, [], check_names=False)["wm_warmup"]
    totals = {alg: [0, 0.0, 0, 0.0] for alg in options.algs}
    for round_index in range(options.rounds):
        for alg in options.algs:
            result = train_once(alg, options.env, options.steps, options.seed + round_index,
                                options.threads, steady_update)
            for index, value in enumerate(result):
                totals[alg][index] += value or 0
            print(f"round {round_index} {alg:24s} env steps {result[0]:7d} wall {result[1]:7.1f} s",
                  flush=True)

    print(f"\nenv={options.env} steps={options.steps} rounds={options.rounds} threads={options.threads} "
          f"load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    print(f"{'alg':24s} {'us per env step':>16s} {'steady state (from update ' + str(steady_update) + ')':>34s}")
    per_step = {}
    for alg, (steps, wall, steady_steps, steady_wall) in totals.items():
        steady = 1e6 * steady_wall / steady_steps if steady_steps else float("nan")
        per_step[alg] = (1e6 * wall / steps, steady)
        print(f"{alg:24s} {per_step[alg][0]:16.0f} {steady:34.0f}")
    baseline, *methods = options.algs
    base = per_step[baseline]
    for alg in methods:
        target = " (issue 9's target: <= 3)" if baseline == "qmix" and alg.split()[0] == "sale_mb" else ""
        print(f"ratio {alg} / {baseline}: {per_step[alg][0] / base[0]:.2f} whole run, "
              f"{per_step[alg][1] / base[1]:.2f} steady state{target}")


if __name__ == "__main__":
    main()
