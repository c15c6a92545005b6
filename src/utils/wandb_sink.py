"""Weights & Biases as a sink of the run's Logger (``use_wandb=True``), with EPyMARL's keys.

Every stat the Logger records goes to W&B with ``t_env`` as its step; the merged config is the
run's config; the run is named by the run token and grouped by algorithm and env, so seeds line
up. Its id is derived from the token, so a resumed run (same token) continues the same W&B run.
With ``wandb_save_model`` (and ``save_model``), every checkpoint is uploaded as a ``model``
artifact. ``wandb_mode=online`` without a reachable W&B server or without credentials logs a
warning and goes on offline: the run is never held up and nothing it logs is lost.
"""
import hashlib
import os
import socket
import threading
from urllib.parse import urlparse

WANDB_INSTALL = "pip install -e .[wandb]  (or: pip install wandb==0.25.0)"
WANDB_MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = "sale-marl"
SERVER_PROBE_S = 5.0  # how long an online run waits to reach the W&B server before going offline


def check_wandb(config):
    """Start-up checks for ``use_wandb``: a known ``wandb_mode`` and an importable wandb package.
    Raises ValueError or ImportError saying what to fix."""
    if not config["use_wandb"]:
        return
    if config["wandb_mode"] not in WANDB_MODES:
        raise ValueError(f"wandb_mode must be one of {', '.join(WANDB_MODES)}, got {config['wandb_mode']!r}.")
    try:
        import wandb  # noqa: F401
    except ImportError as error:
        raise ImportError(f"use_wandb=True needs the wandb package, which could not be imported ({error}). "
                          f"Install it: {WANDB_INSTALL}") from error


def wandb_run_id(run_token):
    """The W&B run id of a run token: the same token (a resumed run) gives the same id."""
    return hashlib.sha256(run_token.encode()).hexdigest()[:16]


def server_reachable(base_url, timeout_s=SERVER_PROBE_S):
    """Whether a TCP connection to the W&B server opens within ``timeout_s`` (name lookup included)."""
    address = urlparse(base_url)
    port = address.port or (443 if address.scheme == "https" else 80)
    reached = []

    def connect():
        try:
            socket.create_connection((address.hostname, port), timeout=timeout_s).close()
            reached.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout_s)
    return bool(reached)


class WandbSink:
    """One W&B run fed by ``log(key, value, t)``; ``log_checkpoint(path, files, t)`` uploads a checkpoint's models.

    ``resumed_at``: the step of the checkpoint a resumed run continues from. The Logger replays the
    run's earlier history into its sinks; W&B already holds it, so steps up to ``resumed_at`` are
    not sent again.
    """

    def __init__(self, config, run_token, group, directory, console_logger, resumed_at=None):
        import wandb

        self._wandb = wandb
        self._log = console_logger
        self._save_models = config["wandb_save_model"] and config["save_model"]
        self._resumed_at = resumed_at
        self.run_id = wandb_run_id(run_token)
        mode = config["wandb_mode"]
        base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
        offline_because = None
        if mode == "online" and not server_reachable(base_url):
            offline_because, mode = f"the W&B server {base_url} cannot be reached", "offline"
        init_args = dict(entity=config["wandb_team"], project=config["wandb_project"] or DEFAULT_PROJECT,
                         config=config, name=run_token, group=group, id=self.run_id, dir=directory)
        if mode == "online":
            try:  # resume="allow": a resumed run (same id) continues the run on the server
                self._run = wandb.init(mode=mode, resume="allow", **init_args)
            except wandb.errors.Error as error:  # e.g. no credentials
                offline_because, mode = f"W&B could not start an online run ({error})", "offline"
        if mode != "online":  # offline parts of one run share its id: `wandb sync --append` joins them
            self._run = wandb.init(mode=mode, **init_args)
        if offline_because:
            self._log.warning("wandb_mode=online, but %s: this run is logged offline instead. Upload it "
                              "later with `wandb sync %s`.", offline_because, os.path.dirname(self._run.dir))
        self._log.info("W&B run %s: %s", self.run_id,
                       "disabled" if mode == "disabled" else f"{mode}, in {os.path.dirname(self._run.dir)}")

    def log(self, key, value, t):
        """One stat at env step ``t`` (stats of the same step form one W&B history row)."""
        if self._resumed_at is not None and t <= self._resumed_at:
            return
        self._run.log({key: value}, step=int(t))

    def log_checkpoint(self, path, files, t):
        """Upload the model ``files`` of checkpoint folder ``path`` (saved at step ``t``) as a
        ``model`` artifact (the replay buffer and the rest of the full state stay local)."""
        if not self._save_models:
            return
        artifact = self._wandb.Artifact(f"model-{self.run_id}", type="model", metadata={"t_env": int(t)})
        for name in files:
            artifact.add_file(os.path.join(path, name), name=name)
        self._run.log_artifact(artifact, aliases=["latest", f"t_env_{int(t)}"])

    def close(self, exit_code=0):
        """Finish the run (W&B marks a non-zero ``exit_code`` as failed) and wait until W&B's
        service process has written all of it."""
        self._run.finish(exit_code=exit_code)
        self._wandb.teardown()
