"""Wires one run together: runner -> replay buffer -> learner, tests, logging and checkpoints."""
import datetime
import math
import os
import random
import time
from types import SimpleNamespace

import numpy as np
import torch

from components.episode_buffer import ReplayBuffer
from components.transforms import OneHot
from controllers import REGISTRY as mac_REGISTRY
from learners import REGISTRY as le_REGISTRY
from runners import REGISTRY as r_REGISTRY
from checkpoint import choose_step, load_torch, write_checkpoint
from experiment import env_label, resolve_path, results_dir
from utils.logging import Logger, get_console_logger


def run(_run, _config, _log):
    """Sacred's main function: build `args`, then train (or evaluate)."""
    args = SimpleNamespace(**_config)
    torch.set_num_threads(args.torch_threads)
    _seed_everything(args.seed)

    if args.use_cuda and not torch.cuda.is_available():
        _log.warning("use_cuda=True but no CUDA device is available; running on the CPU.")
        args.use_cuda = False
    args.device = "cuda" if args.use_cuda else "cpu"

    if args.resume:
        args.unique_token = os.path.basename(os.path.normpath(resolve_path(args.checkpoint_path)))
    else:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        args.unique_token = f"{args.name}_seed{args.seed}_{env_label(_config)}_{stamp}"
    _run.info["unique_token"] = args.unique_token   # names the run's models/ and tb_logs/ folders

    logger = Logger(get_console_logger())
    logger.setup_sacred(_run)
    if args.use_tensorboard:
        logger.setup_tb(os.path.join(results_dir(_config), "tb_logs", args.unique_token))
    logger.console_logger.info("Run token: %s", args.unique_token)

    try:
        run_sequential(args, logger)
    finally:
        logger.close()


def _seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _rng_states():
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_states(states):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


def build_scheme(env_info, args):
    scheme = {
        "state": {"vshape": env_info["state_shape"]},
        "obs": {"vshape": env_info["obs_shape"], "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (env_info["n_actions"],), "group": "agents", "dtype": torch.int},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    scheme["reward"] = {"vshape": (1,)} if args.common_reward else {"vshape": (args.n_agents,)}
    groups = {"agents": args.n_agents}
    preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=args.n_actions)])}
    return scheme, groups, preprocess


class Progress:
    """Counters of the training loop, saved with full-state checkpoints."""

    def __init__(self):
        self.episode = 0
        self.last_test_T = None
        self.last_log_T = 0
        self.model_save_time = 0

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


def run_sequential(args, logger):
    runner = r_REGISTRY[args.runner](args=args, logger=logger)
    env_info = runner.get_env_info()
    args.n_agents = env_info["n_agents"]
    args.n_actions = env_info["n_actions"]
    args.state_shape = env_info["state_shape"]
    args.obs_shape = env_info["obs_shape"]
    args.episode_limit = env_info["episode_limit"]

    scheme, groups, preprocess = build_scheme(env_info, args)
    buffer = ReplayBuffer(scheme, groups, args.buffer_size, env_info["episode_limit"] + 1,
                          preprocess=preprocess, device="cpu" if args.buffer_cpu_only else args.device)
    mac = mac_REGISTRY[args.mac](buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    learner = le_REGISTRY[args.learner](mac, buffer.scheme, logger, args)
    if args.use_cuda:
        learner.cuda()

    progress = Progress()
    models_dir = os.path.join(results_dir(vars(args)), "models", args.unique_token)
    try:
        if args.checkpoint_path:
            _load_checkpoint(args, logger, runner, learner, buffer, progress)
        if args.evaluate:
            _evaluate(args, runner, logger)
            return
        _train(args, logger, runner, learner, buffer, progress, models_dir)
    finally:
        runner.close_env()
    logger.console_logger.info("Finished training")


def _run_tests(args, runner):
    """Greedy test episodes, enough for the runner to log `test_nepisode` of them."""
    for _ in range(math.ceil(args.test_nepisode / runner.batch_size)):
        runner.run(test_mode=True)


def _evaluate(args, runner, logger):
    _run_tests(args, runner)
    if args.save_replay:
        runner.save_replay()
    logger.print_recent_stats(header="evaluation")


def _train(args, logger, runner, learner, buffer, progress, models_dir):
    log = logger.console_logger
    log.info("Beginning training for %d timesteps", args.t_max)
    start_time = time.time()
    start_t_env = runner.t_env
    if progress.last_test_T is None:
        progress.last_test_T = -args.test_interval - 1

    while runner.t_env <= args.t_max:
        episode_batch = runner.run(test_mode=False)
        buffer.insert_episode_batch(episode_batch)
        if buffer.can_sample(args.batch_size):
            sample = buffer.sample(args.batch_size)  # the learner cuts the padding off
            if sample.device != args.device:
                sample.to(args.device)
            learner.train(sample, runner.t_env, progress.episode)
        progress.episode += args.batch_size_run

        if (runner.t_env - progress.last_test_T) / args.test_interval >= 1.0:
            progress.last_test_T = runner.t_env
            _run_tests(args, runner)

        if args.save_model and runner.t_env - progress.model_save_time >= args.save_model_interval:
            progress.model_save_time = runner.t_env
            save_checkpoint(args, models_dir, runner, learner, buffer, progress, logger)

        if runner.t_env - progress.last_log_T >= args.log_interval:
            logger.log_stat("episode", progress.episode, runner.t_env)
            logger.print_recent_stats(header=_progress_line(args, runner, logger, start_time, start_t_env))
            progress.last_log_T = runner.t_env

    if args.save_model and progress.model_save_time != runner.t_env:
        progress.model_save_time = runner.t_env
        save_checkpoint(args, models_dir, runner, learner, buffer, progress, logger)


def _progress_line(args, runner, logger, start_time, start_t_env):
    elapsed = time.time() - start_time
    rate = (runner.t_env - start_t_env) / max(elapsed, 1e-9)
    left = max(args.t_max - runner.t_env, 0) / max(rate, 1e-9)
    test_return = logger.latest("test_return_mean")
    test_text = f"{test_return:.3f}" if test_return is not None else "-"
    return (f"{runner.t_env}/{args.t_max} steps | {rate:.0f} steps/s | elapsed "
            f"{datetime.timedelta(seconds=int(elapsed))} | left ~{datetime.timedelta(seconds=int(left))} "
            f"| test return {test_text}")


# --- checkpoints ----------------------------------------------------------------------------------

def save_checkpoint(args, models_dir, runner, learner, buffer, progress, logger):
    """Write the models (and, with save_full_state, everything needed to resume) atomically."""
    directory = os.path.join(models_dir, str(runner.t_env))

    def write_files(path):
        learner.save_models(path)
        if args.save_full_state:
            torch.save(buffer.state_dict(), os.path.join(path, "buffer.th"))
            torch.save(runner.get_state(), os.path.join(path, "runner_state.th"))
            torch.save({"progress": progress.state_dict(), "rng": _rng_states(),
                        "stats": logger.state_dict()}, os.path.join(path, "run_state.th"))

    write_checkpoint(directory, write_files)
    logger.console_logger.info("Saved checkpoint %s", directory)


def _load_checkpoint(args, logger, runner, learner, buffer, progress):
    models_dir = resolve_path(args.checkpoint_path)
    step = choose_step(models_dir, args.load_step)
    path = os.path.join(models_dir, str(step))
    logger.console_logger.info("Loading checkpoint %s", path)
    learner.load_models(path)
    runner.t_env = step
    if not args.resume:
        return
    buffer.load_state_dict(load_torch(path, "buffer.th"))
    runner.set_state(load_torch(path, "runner_state.th"))
    run_state = load_torch(path, "run_state.th")
    progress.load_state_dict(run_state["progress"])
    logger.load_state_dict(run_state["stats"])
    _set_rng_states(run_state["rng"])
    logger.console_logger.info("Resumed at t_env=%d, episode %d", runner.t_env, progress.episode)
