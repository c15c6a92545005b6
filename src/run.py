"""Wires one run together: runner -> replay buffer -> learner, tests, logging and checkpoints."""
import copy
import datetime
import json
import math
import os
import random
import shlex
import signal
from types import SimpleNamespace

import numpy as np
import torch
from sacred.utils import SacredInterrupt

from components.episode_buffer import ReplayBuffer
from components.transforms import OneHot
from controllers import REGISTRY as mac_REGISTRY
from learners import REGISTRY as le_REGISTRY
from runners import REGISTRY as r_REGISTRY
from checkpoint import (CONFIG_FILE, checkpoint_steps, choose_step, drop_full_state, has_full_state, load_torch,
                        model_files, write_checkpoint)
from experiment import check_buffer_memory, env_label, resolve_path, results_dir
from utils.logging import Logger, ProgressLine, get_console_logger


class RunInterrupted(SacredInterrupt):
    """Raised after a SIGINT/SIGTERM once the checkpoint is written; Sacred marks the run
    INTERRUPTED. `exit_code` is 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    STATUS = "INTERRUPTED"

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


class StopRequest:
    """The first SIGINT or SIGTERM asks the training loop to stop after the current step; a later
    SIGINT (a second Ctrl-C) stops at once (KeyboardInterrupt, nothing more saved). A later SIGTERM
    changes nothing: senders that are not a person may send it more than once (the kernel's
    parent-death signal comes once per exiting thread of the launcher's process)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, console_logger):
        self.console_logger = console_logger
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, _frame):
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        self.console_logger.warning(
            "%s received: stopping after the current step and saving a checkpoint "
            "(Ctrl-C again to stop at once without saving).", signal.Signals(signum).name)


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
    if args.use_wandb:
        logger.add_sink(_wandb_sink(args, _config, logger))
    logger.console_logger.info("Run token: %s", args.unique_token)

    exit_code = 1  # what the sinks are told unless the run ends normally or is interrupted
    try:
        with StopRequest(logger.console_logger) as stop:
            run_sequential(args, logger, json.loads(json.dumps(_config)), stop)
        exit_code = 0
    except RunInterrupted as interrupted:
        exit_code = interrupted.exit_code
        # Sacred 0.8.7 collects the captured output at heartbeats and on completion only; collect it
        # now so that the final heartbeat writes the last lines (the resume command) to cout.txt.
        _run._get_captured_output()
        raise
    finally:
        logger.close(exit_code)


def _wandb_sink(args, config, logger):
    """W&B's sink: named by the run token, grouped by algorithm and env; a resumed run continues."""
    from utils.wandb_sink import WandbSink

    resumed_at = choose_step(resolve_path(args.checkpoint_path), args.load_step) if args.resume else None
    return WandbSink(config, args.unique_token, f"{args.name}_{env_label(config)}", results_dir(config),
                     logger.console_logger, resumed_at=resumed_at)


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


def apply_env_info(args, env_info):
    """Copy what the agents, mixers and learners read from the env onto ``args``."""
    args.n_agents = env_info["n_agents"]
    args.n_actions = env_info["n_actions"]
    args.state_shape = env_info["state_shape"]
    args.obs_shape = env_info["obs_shape"]
    args.episode_limit = env_info["episode_limit"]
    args.continuous_actions = env_info.get("continuous_actions", False)


def build_scheme(env_info, args):
    """EPyMARL's scheme. Discrete actions are indices (long, (1,)) with a one-hot copy; continuous
    actions are float vectors of the env's ``n_actions`` dimensions, and ``avail_actions`` then
    marks the dimensions each agent has."""
    if args.continuous_actions:
        actions = {"vshape": (env_info["n_actions"],), "group": "agents", "dtype": torch.float32}
        preprocess = {}
    else:
        actions = {"vshape": (1,), "group": "agents", "dtype": torch.long}
        preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=args.n_actions)])}
    scheme = {
        "state": {"vshape": env_info["state_shape"]},
        "obs": {"vshape": env_info["obs_shape"], "group": "agents"},
        "actions": actions,
        "avail_actions": {"vshape": (env_info["n_actions"],), "group": "agents", "dtype": torch.int},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    scheme["reward"] = {"vshape": (1,)} if args.common_reward else {"vshape": (args.n_agents,)}
    groups = {"agents": args.n_agents}
    return scheme, groups, preprocess


def acting_mac(args, mac):
    """The MAC the runner acts with: the learner's own, or with ``use_cuda`` and ``act_on_cpu`` a
    CPU copy of it (made before the learner moves to the GPU), which ``sync_acting`` keeps equal to
    the learner's. Small agents act one env step at a time faster on the CPU than on a GPU."""
    return copy.deepcopy(mac) if args.use_cuda and args.act_on_cpu else mac


def sync_acting(runner, learner):
    """Copy the learner's agents into the runner's CPU copy (after every update and checkpoint
    load); nothing when the runner acts with the learner's own MAC."""
    if runner.mac is not learner.mac:
        runner.mac.load_state(learner.mac)


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


def run_sequential(args, logger, config, stop):
    """Build the run's parts and train; `config` is the run's config as given (saved with every
    checkpoint so that a resume needs nothing else), `stop` a StopRequest."""
    runner = r_REGISTRY[args.runner](args=args, logger=logger)
    env_info = runner.get_env_info()
    apply_env_info(args, env_info)

    scheme, groups, preprocess = build_scheme(env_info, args)
    buffer = ReplayBuffer(scheme, groups, args.buffer_size, env_info["episode_limit"] + 1,
                          preprocess=preprocess, device="cpu" if args.buffer_cpu_only else args.device)
    if not args.evaluate:
        check_buffer_memory(buffer, logger.console_logger)
    mac = mac_REGISTRY[args.mac](buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=acting_mac(args, mac))
    learner = le_REGISTRY[args.learner](mac, buffer.scheme, logger, args)
    if args.use_cuda:
        learner.cuda()

    progress = Progress()
    models_dir = os.path.join(results_dir(vars(args)), "models", args.unique_token)
    try:
        if args.checkpoint_path:
            _load_checkpoint(args, logger, runner, learner, buffer, progress)
            sync_acting(runner, learner)
        if args.evaluate:
            _evaluate(args, runner, logger)
            return
        saver = CheckpointSaver(args, config, models_dir, runner, learner, buffer, progress, logger)
        _train(args, logger, runner, learner, buffer, progress, saver, stop)
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


def _train(args, logger, runner, learner, buffer, progress, saver, stop):
    log = logger.console_logger
    log.info("Beginning training for %d timesteps", args.t_max)
    line = ProgressLine(args.t_max, runner.t_env, args.progress_interval, log)
    line.update(runner.t_env, progress.episode, logger.latest("test_return_mean"))
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
            sync_acting(runner, learner)
        progress.episode += args.batch_size_run

        if (runner.t_env - progress.last_test_T) / args.test_interval >= 1.0:
            progress.last_test_T = runner.t_env
            _run_tests(args, runner)

        if args.save_model and runner.t_env - progress.model_save_time >= args.save_model_interval:
            saver.save()

        if runner.t_env - progress.last_log_T >= args.log_interval:
            logger.log_stat("episode", progress.episode, runner.t_env)
            test_return = logger.latest("test_return_mean")
            logger.print_recent_stats(header=line.text(runner.t_env, progress.episode, test_return))
            progress.last_log_T = runner.t_env
        line.update(runner.t_env, progress.episode, logger.latest("test_return_mean"))

        if stop.signum is not None:
            line.close()
            _stop(saver, stop.signum, log)
    line.close()

    if args.save_model and progress.model_save_time != runner.t_env:
        saver.save()


def _stop(saver, signum, log):
    """Save everything, say how to resume, and end the run as INTERRUPTED."""
    saver.save(full_state=True)
    log.warning("Interrupted at t_env=%d. Resume with: python src/main.py with resume=True checkpoint_path=%s",
                saver.runner.t_env, shlex.quote(saver.models_dir))
    raise RunInterrupted(signum)


# --- checkpoints ----------------------------------------------------------------------------------

class CheckpointSaver:
    """Writes checkpoints `<models_dir>/<t_env>/` atomically. A full-state checkpoint (replay
    buffer, runner and RNG states, counters, statistics and the run's config) is enough to resume
    the run; only the newest one keeps its full state, older ones keep their models."""

    def __init__(self, args, config, models_dir, runner, learner, buffer, progress, logger):
        self.args, self.config, self.models_dir = args, config, models_dir
        self.runner, self.learner, self.buffer = runner, learner, buffer
        self.progress, self.logger = progress, logger

    def save(self, full_state=None):
        full_state = self.args.save_full_state if full_state is None else full_state
        self.progress.model_save_time = self.runner.t_env
        directory = os.path.join(self.models_dir, str(self.runner.t_env))

        def write_files(path):
            self.learner.save_models(path)
            if full_state:
                self._write_full_state(path)

        write_checkpoint(directory, write_files)
        if full_state:
            for step in checkpoint_steps(self.models_dir):
                older = os.path.join(self.models_dir, str(step))
                if older != directory and has_full_state(older):
                    drop_full_state(older)
        self.logger.console_logger.info("Saved checkpoint %s", directory)
        self.logger.log_checkpoint(directory, model_files(directory), self.runner.t_env)

    def _write_full_state(self, path):
        torch.save(self.buffer.state_dict(), os.path.join(path, "buffer.th"))
        torch.save(self.runner.get_state(), os.path.join(path, "runner_state.th"))
        torch.save({"progress": self.progress.state_dict(), "rng": _rng_states(),
                    "stats": self.logger.state_dict()}, os.path.join(path, "run_state.th"))
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump(self.config, f, indent=1, sort_keys=True)


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
