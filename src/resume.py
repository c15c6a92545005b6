"""A resumed run's config: the one saved in its checkpoint, plus the few keys that may change.

`python src/main.py with resume=True checkpoint_path=<models folder>` needs nothing else: the
config (seed included) is read from the checkpoint. `--config`/`--env-config` and other
`key=value` overrides may still be given; the keys in RESUMABLE_KEYS are applied, and any other
difference from the saved config is refused before anything starts, naming each key and both values.
"""
import json
import os
from copy import deepcopy

from checkpoint import CONFIG_FILE, CheckpointError, choose_step, verify_checkpoint
from experiment import resolve_path
from run_config import CONFIG_DIR, ConfigError, apply_overrides, build_config, check_consistency, \
    check_registries, declared_types, load_yaml, merge

# Keys a resumed run may change: budgets, how often it tests, logs and saves, where it reports
# (a new local_results_path takes the Sacred record and new checkpoints there; trackers may be
# switched on or off), and the hardware.
# Everything else shapes what is learnt and must stay as saved.
RESUMABLE_KEYS = (
    "t_max", "test_interval", "test_nepisode", "log_interval", "runner_log_interval",
    "learner_log_interval", "progress_interval", "save_model", "save_model_interval",
    "use_tensorboard", "local_results_path", "mongo_url", "mongo_db_name", "mongo_timeout_ms",
    "use_wandb", "wandb_team", "wandb_project", "wandb_mode", "wandb_save_model",
    "torch_threads", "trace_acting", "use_cuda", "act_on_cpu", "buffer_cpu_only", "render",
)
# Keys that say what to do with the checkpoint rather than describe the run.
RUN_CONTROL_KEYS = ("resume", "checkpoint_path", "load_step")


class _Absent:
    def __repr__(self):
        return "(not set)"


ABSENT = _Absent()


def _flatten(config, prefix=""):
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _top(key):
    return key.split(".", 1)[0]


def saved_config(checkpoint_path, load_step):
    """The config saved in the checkpoint that `checkpoint_path`/`load_step` picks."""
    models_dir = resolve_path(checkpoint_path)
    path = os.path.join(models_dir, str(choose_step(models_dir, load_step)))
    verify_checkpoint(path)
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise CheckpointError(
            f"resume=True needs a full-state checkpoint, but {path} is not one (it has no {CONFIG_FILE}: "
            f"an EPyMARL or models-only checkpoint, e.g. saved with save_full_state=False). Load it "
            f"without resume to continue from its weights.")
    with open(config_path) as f:
        return json.load(f)


def resume_config(alg_name, env_name, overrides):
    """The config of the run to resume, with the allowed overrides applied (see module doc)."""
    given = dict(overrides)
    saved = saved_config(given.get("checkpoint_path") or "", given.get("load_step", 0))
    default = load_yaml(os.path.join(CONFIG_DIR, "default.yaml"))
    base = merge(default, saved)
    if alg_name or env_name:
        requested = build_config(alg_name, env_name, overrides, check_names=False)
    else:
        requested = apply_overrides(base, overrides, declared_types([default, saved]))
    given_keys = {_top(key) for key in given}
    flat_saved, flat_requested = _flatten(base), _flatten(requested)
    differences = []
    for key in sorted(set(flat_saved) | set(flat_requested)):
        top = _top(key)
        if top in RESUMABLE_KEYS or top in RUN_CONTROL_KEYS or top not in saved:
            continue  # may change, or a key this code added since the run started
        if key in ("seed", "env_args.seed") and "seed" not in given_keys:
            continue  # not given: the saved seed is the run's seed
        old, new = flat_saved.get(key, ABSENT), flat_requested.get(key, ABSENT)
        if old != new:
            differences.append(f"{key}: saved {old!r}, given {new!r}")
    if differences:
        path = given.get("checkpoint_path")
        raise ConfigError(
            "resume=True continues the saved run, but these keys differ from its config:\n  "
            + "\n  ".join(differences)
            + f"\nTo resume as saved: python src/main.py with resume=True checkpoint_path={path}. "
            f"Keys that may change on resume: {', '.join(RESUMABLE_KEYS)}.")
    config = deepcopy(base)
    for key in RESUMABLE_KEYS + RUN_CONTROL_KEYS:
        if key in given_keys or key in RUN_CONTROL_KEYS:
            config[key] = requested[key]
    check_consistency(config)
    check_registries(config)
    return config

