"""Results paths, pre-flight checks (results folder, env, checkpoint, replay-buffer memory, W&B)
and the Sacred observers (files, optional MongoDB)."""
import os
import re
import tempfile

from sacred.observers import FileStorageObserver

from checkpoint import CheckpointError, checkpoint_steps, choose_step, verify_checkpoint
from run_config import REPO_ROOT, ConfigError


def resolve_path(path):
    """Relative paths resolve from the repository root, never the working directory."""
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def results_dir(config):
    return resolve_path(config["local_results_path"])


def env_label(config):
    """The env part of results paths: the map name, else the env id without its module prefix."""
    env_args = config["env_args"]
    label = env_args.get("map_name") or env_args.get("scenario") or env_args.get("key") or config["env"]
    if env_args.get("agent_conf"):
        label = f"{label}_{env_args['agent_conf']}"
    label = str(label).split(":")[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label)


def preflight_results(config):
    """The results folder must exist (or be creatable) and be writable."""
    folder = results_dir(config)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(
            f"The results folder {folder} is not writable ({err.strerror}). Set "
            f"local_results_path=<a writable folder>.") from None


def check_buffer_memory(buffer, log):
    """Print the replay buffer's full-size memory; refuse one larger than the memory available
    where it lives (host memory, or the GPU's with buffer_cpu_only=False)."""
    import psutil
    import torch

    if str(buffer.device).startswith("cuda"):
        available, where = torch.cuda.mem_get_info()[0], "GPU memory"
    else:
        available, where = psutil.virtual_memory().available, "memory"
    need = buffer.full_size_bytes()
    log.info("Replay buffer: %d episodes x %d steps = %.2f GB when full (allocated as episodes arrive; "
             "%.2f GB of %s available)", buffer.buffer_size, buffer.max_seq_length, need / 1e9,
             available / 1e9, where)
    if need > available:
        fitting = max(1, available // buffer.episode_bytes)
        raise ConfigError(
            f"The replay buffer needs {need / 1e9:.2f} GB when full (buffer_size={buffer.buffer_size} "
            f"episodes of {buffer.episode_bytes / 1e6:.2f} MB), but only {available / 1e9:.2f} GB of "
            f"{where} is available. Lower buffer_size (at most about {fitting} fits).")


def preflight_env(config):
    """The chosen env's own start-up checks, as a ConfigError naming what to install or fix; and
    a learner that needs discrete actions is refused on an env whose actions are continuous."""
    from envs import check_requirements, has_continuous_actions
    from learners import REGISTRY as learner_registry

    try:
        check_requirements(config["env"], config["env_args"])
    except (ImportError, FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    learner = learner_registry[config["learner"]]
    if (has_continuous_actions(config["env"], config["env_args"])
            and not getattr(learner, "supports_continuous_actions", False)):
        raise ConfigError(
            f"{config['name']} (learner={config['learner']}) needs discrete actions, but this env's "
            f"actions are continuous (env_args.action_bins is null). Discretise them, e.g. "
            f"env_args.action_bins=11, or use a policy-gradient method with continuous support: "
            f"ippo, mappo, ia2c, maa2c (or their _ns variants).")


def preflight_wandb(config):
    """With use_wandb: a known wandb_mode and an installed wandb, as a ConfigError saying how to fix it."""
    from utils.wandb_sink import check_wandb

    try:
        check_wandb(config)
    except (ImportError, ValueError) as err:
        raise ConfigError(str(err)) from None


def preflight_checkpoint(config):
    """Check a checkpoint to load exists and is intact before anything starts."""
    if not config["checkpoint_path"]:
        return
    models_dir = resolve_path(config["checkpoint_path"])
    step = choose_step(models_dir, config["load_step"])
    path = os.path.join(models_dir, str(step))
    full = verify_checkpoint(path) and os.path.isfile(os.path.join(path, "run_state.th"))
    if config["resume"] and not full:
        raise CheckpointError(
            f"resume=True needs a full-state checkpoint, but {models_dir}/{step} is not one "
            f"(an EPyMARL or models-only checkpoint, e.g. saved with save_full_state=False). Load it without resume to continue from its weights.")


def mongo_observer(config, log):
    """A MongoObserver, or None (with a warning) when the server cannot be reached quickly."""
    import gridfs
    import pymongo
    from sacred.observers import MongoObserver

    client = pymongo.MongoClient(config["mongo_url"], serverSelectionTimeoutMS=config["mongo_timeout_ms"])
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as err:
        log.warning(
            "MongoDB at %s is unreachable (%s); this run is recorded in files only.",
            config["mongo_url"], type(err).__name__)
        return None
    db = client[config["mongo_db_name"]]
    return MongoObserver.create_from(db["runs"], gridfs.GridFS(db), metrics_collection=db["metrics"])


class OwnFolderFileStorageObserver(FileStorageObserver):
    """A FileStorageObserver that numbers its run folders itself.

    Sacred hands every observer the id the first one assigned; with MongoDB on, that is the
    database's id, which can name a folder an earlier files-only run already holds. Run folders
    are numbered within their own folder, whatever id the database gives.
    """

    def queued_event(self, ex_info, command, host_info, queue_time, config, meta_info, _id):
        return super().queued_event(ex_info, command, host_info, queue_time, config, meta_info, None)

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        return super().started_event(ex_info, command, host_info, start_time, config, meta_info, None)


RESUME_ONLY_FILES = ("buffer.th",)   # the replay buffer: large, and only needed to resume


def attach_final_checkpoint(sacred_run, config, token):
    """Attach the run's newest checkpoint (its replay buffer excepted) as Sacred artifacts, so a
    MongoDB server (and Omniboard) holds the trained models: artifacts `checkpoint_<t_env>_<file>`."""
    models_dir = os.path.join(results_dir(config), "models", token)
    if not os.path.isdir(models_dir):
        return
    step = checkpoint_steps(models_dir)[-1]
    folder = os.path.join(models_dir, str(step))
    for name in sorted(os.listdir(folder)):
        if name not in RESUME_ONLY_FILES:
            content_type = "application/json" if name.endswith(".json") else "application/octet-stream"
            sacred_run.add_artifact(os.path.join(folder, name), name=f"checkpoint_{step}_{name}",
                                    content_type=content_type)
