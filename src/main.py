"""Entry point: `python src/main.py --config=<alg> --env-config=<env> [with key=value ...]`.

The config is merged and validated before anything starts (see run_config.py), then the run is
handed to Sacred, which records it under results/sacred/<alg>/<env>/<id>/ (and in MongoDB when
`mongo_url` is set).
"""
import errno
import os
import signal
import sys

SRC_DIR = os.path.dirname(os.path.abspath(__file__))
if SRC_DIR not in sys.path:
    sys.path.insert(0, SRC_DIR)

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

# Heavy imports (torch, Sacred) live inside the functions: the parallel runner's spawned workers
# re-import this module, and they need none of it.


def make_experiment(config):
    """A Sacred experiment whose main function is `run.run`, with its observers attached."""
    from sacred import Experiment, SETTINGS
    from sacred.utils import apply_backspaces_and_linefeeds

    from run import run
    from experiment import OwnFolderFileStorageObserver, attach_final_checkpoint, env_label, mongo_observer, results_dir
    from utils.logging import get_console_logger

    SETTINGS.CAPTURE_MODE = "sys"
    log = get_console_logger()
    experiment = Experiment(config["name"], save_git_info=False)   # Omniboard lists runs by it
    experiment.logger = log
    experiment.captured_out_filter = apply_backspaces_and_linefeeds
    experiment.add_config(config)
    sacred_dir = os.path.join(results_dir(config), "sacred", config["name"], env_label(config))
    experiment.observers.append(OwnFolderFileStorageObserver(sacred_dir))
    mongo = mongo_observer(config, log) if config["mongo_url"] else None
    if mongo is not None:
        experiment.observers.append(mongo)

    @experiment.main
    def sacred_main(_run, _config, _log):
        run(_run, _config, _log)
        if mongo is not None and _config["save_model"]:
            attach_final_checkpoint(_run, _config, _run.info["unique_token"])

    return experiment


STOP_WITH_PARENT = "SALE_MARL_STOP_WITH_PARENT"


def stop_with_parent():
    """When ``$SALE_MARL_STOP_WITH_PARENT`` holds the pid of the process that started this one (the
    comparison tool's cells set it), the kernel sends this process SIGTERM if that one dies (Linux:
    prctl PR_SET_PDEATHSIG), so a run whose launcher was killed saves a checkpoint and stops instead
    of running on unwatched. Returns False when the launcher is already gone."""
    parent = os.environ.pop(STOP_WITH_PARENT, None)   # not for this run's own children
    if not parent or not sys.platform.startswith("linux"):
        return True
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == int(parent)   # it may have died before the prctl


def main(argv=None):
    """Run one experiment; returns the process exit code: 2 for a config or checkpoint error
    found before the run starts, 128 + the signal number for a run stopped by SIGINT/SIGTERM
    (checkpointed, resumable), 1 for a run that failed."""
    if not stop_with_parent():
        print("error: the process that started this run is gone; not starting.", file=sys.stderr)
        return 128 + signal.SIGTERM
    from checkpoint import CheckpointError
    from run_config import ConfigError, build_config, parse_command_line
    from experiment import preflight_checkpoint, preflight_env, preflight_results, preflight_wandb
    from resume import resume_config

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        alg_name, env_name, overrides = parse_command_line(argv)
        if dict(overrides).get("resume"):
            config = resume_config(alg_name, env_name, overrides)
        else:
            config = build_config(alg_name, env_name, overrides)
        preflight_results(config)
        preflight_env(config)
        preflight_wandb(config)
        preflight_checkpoint(config)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return _run_experiment(config)


def _run_experiment(config):
    from run import RunInterrupted
    from checkpoint import CheckpointError
    from run_config import ConfigError

    experiment = make_experiment(config)
    try:
        sacred_run = experiment.run()
    except RunInterrupted as stop:
        return stop.exit_code  # the resume command is already printed
    except KeyboardInterrupt:
        print("error: stopped at once (a second interrupt, or one before training began); nothing more was "
              "saved. Resume from the last checkpoint, if any: python src/main.py with resume=True "
              "checkpoint_path=results/models/<token>", file=sys.stderr)
        return 130
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    except OSError as err:  # e.g. Sacred's file observer on a full disk
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise
        print(f"error: cannot write {err.filename or 'the results'}: {err.strerror}. Free space there, or set "
              f"local_results_path=<another folder>.", file=sys.stderr)
        return 1
    return 0 if sacred_run.status == "COMPLETED" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before training started: nothing to save
        sys.exit(130)
