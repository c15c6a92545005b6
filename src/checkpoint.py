"""Atomic, verifiable checkpoint folders.

A checkpoint is the folder `<models dir>/<t_env>/`. It is written into a temporary sibling,
each file is listed with its size and SHA-256 in `manifest.json`, files are flushed to disk, and
the folder is renamed into place, so a crash leaves either the whole checkpoint or none of it.
Loading checks the manifest and names the file that is missing or damaged. Folders without a
manifest (EPyMARL's own checkpoints) load as models only, unless they hold full-state files or
their sibling checkpoints have manifests: then the manifest was lost and the folder is damaged.
A write that fails for want of space or permission is a CheckpointError naming the folder.
"""
import errno
import glob
import hashlib
import json
import os
import shutil

import torch

MANIFEST = "manifest.json"
CONFIG_FILE = "config.json"
# What a full-state checkpoint adds to the models: enough to resume the run exactly.
FULL_STATE_FILES = ("buffer.th", "runner_state.th", "run_state.th", CONFIG_FILE)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable; the message names what and where."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(directory, names):
    """Write `manifest.json` listing `names` (files of `directory`), atomically."""
    manifest = {}
    for name in sorted(names):
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        manifest[name] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
    tmp = os.path.join(directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, MANIFEST))


def write_checkpoint(directory, write_files):
    """Call `write_files(tmp_dir)`, then publish `tmp_dir` atomically as `directory`."""
    tmp = f"{directory}.tmp-{os.getpid()}"
    try:
        _write_and_publish(directory, tmp, write_files)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        code = getattr(err, "errno", None)
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CheckpointError(f"Cannot write checkpoint {directory}: {err.strerror}. "
                                  f"Set local_results_path=<a writable folder> and resume.") from err
        if code in (errno.ENOSPC, errno.EDQUOT) or isinstance(err, RuntimeError) and "iostream" in str(err):
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(directory))).free
            raise CheckpointError(
                f"Cannot write checkpoint {directory}: the disk is full ({free / 1e6:.1f} MB free). "
                f"Free space there (or set local_results_path=<another disk>) and resume.") from err
        raise


def _write_and_publish(directory, tmp, write_files):
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    for leftover in glob.glob(f"{glob.escape(directory)}.tmp-*"):  # from a run killed mid-save
        shutil.rmtree(leftover, ignore_errors=True)
    os.makedirs(tmp)
    write_files(tmp)
    _write_manifest(tmp, os.listdir(tmp))
    if os.path.exists(directory):
        old = f"{directory}.old-{os.getpid()}"
        os.rename(directory, old)
        os.rename(tmp, directory)
        shutil.rmtree(old)
    else:
        os.rename(tmp, directory)
    _fsync_dir(parent)


def model_files(directory):
    """The files of checkpoint `directory` that hold models (no full state, no manifest)."""
    return sorted(name for name in os.listdir(directory) if name not in FULL_STATE_FILES and name != MANIFEST)


def drop_full_state(directory):
    """Keep only the models of checkpoint `directory`: its manifest first, then the files go."""
    _write_manifest(directory, model_files(directory))
    for name in FULL_STATE_FILES:
        if os.path.exists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))


def has_full_state(directory):
    """True when checkpoint `directory` holds any of the full-state files."""
    return any(os.path.exists(os.path.join(directory, name)) for name in FULL_STATE_FILES)


def _lost_manifest(directory):
    """True when `directory` has no manifest but should: it holds full-state files, or another
    checkpoint beside it has one (so it was written by this framework, not EPyMARL)."""
    if has_full_state(directory):
        return True
    parent = os.path.dirname(os.path.abspath(directory))
    return any(os.path.isfile(os.path.join(parent, name, MANIFEST)) for name in os.listdir(parent) if name.isdigit())


def verify_checkpoint(directory):
    """Raise CheckpointError unless every file in the manifest is present and intact. Returns
    False for a folder without a manifest that is an EPyMARL (models-only) checkpoint."""
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(manifest_path):
        if _lost_manifest(directory):
            raise CheckpointError(
                f"Checkpoint {directory} is damaged: its {MANIFEST} is missing, so its files cannot be "
                f"checked. Load an earlier step with load_step=<t_env>.")
        return False
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"Checkpoint {directory}: {MANIFEST} is unreadable ({err}).") from None
    for name, entry in manifest.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise CheckpointError(f"Checkpoint {directory} is incomplete: {name} is missing.")
        if os.path.getsize(path) != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise CheckpointError(
                f"Checkpoint {directory} is damaged: {name} does not match its recorded size/hash. "
                f"Load an earlier step with load_step=<t_env>.")
    return True


def checkpoint_steps(models_dir):
    """The t_env of every checkpoint folder in `models_dir`, ascending (temporary folders skipped)."""
    if not os.path.isdir(models_dir):
        raise CheckpointError(f"checkpoint_path {models_dir} does not exist or is not a folder.")
    steps = sorted(int(name) for name in os.listdir(models_dir)
                   if name.isdigit() and os.path.isdir(os.path.join(models_dir, name)))
    if not steps:
        raise CheckpointError(
            f"checkpoint_path {models_dir} holds no checkpoint folders (named by their t_env). "
            f"Point it at a run's models folder, e.g. results/models/<token>.")
    return steps


def choose_step(models_dir, load_step):
    """The checkpoint to load: the newest for load_step=0, else the one closest to load_step."""
    steps = checkpoint_steps(models_dir)
    if load_step == 0:
        return steps[-1]
    return min(steps, key=lambda step: abs(step - load_step))


def load_torch(directory, name, required=True, map_location="cpu"):
    """torch.load one file of a checkpoint with an error that names it."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        if required:
            raise CheckpointError(f"Checkpoint {directory} has no {name}.")
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(f"Checkpoint file {path} is unreadable ({type(err).__name__}: {err}).") from None
