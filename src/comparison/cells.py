"""One grid cell as one process of `src/main.py`, and the state a rerun of the grid reads.

A cell lives in `<grid folder>/cells/<cell id>/`: `local_results_path` of its runs (so its Sacred
runs are under `sacred/` and its checkpoints under `models/<token>/<step>/`), `stdout.log` and
`stderr.log` (appended, one header line per attempt) and `cell.json`, its state:
`running` (with main.py's `pid`), `done` (main.py exited 0), `interrupted` (main.py stopped by a
signal: it saved a checkpoint first when it could) or `failed` (with the command and the tail of its
stderr). An `interrupted` cell, or a `running` one whose process is gone, resumes from its newest
full-state checkpoint (`resume=True checkpoint_path=...`), or starts again when it has none. A
`done` cell whose budget was raised (a larger `t_max` in the grid) goes on from its final checkpoint
with `--extend`.

main.py runs in its own session, so a terminal's Ctrl-C reaches only compare.py, which passes the
signal on once (backends.LocalProcesses; on Ray, a cancelled task passes SIGTERM on, `wait_for`): a
second Ctrl-C would make main.py stop without saving. main.py is told the pid of the process that
started it (``SALE_MARL_STOP_WITH_PARENT``) and gets SIGTERM from the kernel if that one dies.
`run_cell` uses only the standard library and holds no lock: Ray ships this module by value.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

from checkpoint import CheckpointError, checkpoint_steps, verify_checkpoint

SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(SRC_DIR, "main.py")
STATE_FILE = "cell.json"
STDERR_TAIL_LINES = 25
# main.py stopped by SIGINT/SIGTERM exits 128 + the signal after saving a checkpoint; a process killed
# outright (negative return code) may still have older checkpoints. Both resume; anything else failed.
INTERRUPTED_CODES = {128 + signal.SIGINT, 128 + signal.SIGTERM,
                     -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL, -signal.SIGHUP}


def cell_folder(grid_dir, cell):
    return os.path.join(grid_dir, "cells", cell.cell_id)


def read_state(folder):
    """The cell's saved state, or None for a cell never started (or an unreadable state file)."""
    try:
        with open(os.path.join(folder, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_state(folder, state):
    """Atomic: a reader sees the old state or the new one, never half of one."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def newest_checkpoint(folder, full_only):
    """(env step, `models/<token>`, holds the full state) of the cell's newest intact checkpoint
    (that holds the full state, with `full_only`), or None."""
    best = None
    for models_dir in glob.glob(os.path.join(folder, "models", "*")):
        try:
            steps = checkpoint_steps(models_dir)
        except CheckpointError:
            continue
        for step in reversed(steps):
            if best is not None and step <= best[0]:
                break
            path = os.path.join(models_dir, str(step))
            try:
                intact = verify_checkpoint(path)
            except CheckpointError:
                continue
            full = intact and os.path.isfile(os.path.join(path, "run_state.th"))
            if full or (intact and not full_only):
                best = (step, models_dir, full)
                break
    return best


def resumable_checkpoint(folder):
    """`models/<token>` holding the cell's newest intact full-state checkpoint, or None."""
    newest = newest_checkpoint(folder, full_only=True)
    return newest and newest[1]


def cell_command(cell, folder, resume_from=None):
    """The main.py command line of a cell; checkpoints on (a user's `save_model=False` wins)."""
    command = [sys.executable, MAIN, f"--config={cell.alg.config}", f"--env-config={cell.env.config}",
               "with", "save_model=True", *cell.overrides, f"local_results_path={folder}"]
    if resume_from:
        command += ["resume=True", f"checkpoint_path={resume_from}"]
    return command


def running_elsewhere(folder, state):
    """The pid of a live main.py that still runs this cell for another invocation, or None."""
    if not state or state.get("status") != "running" or state.get("host") != os.uname().nodename:
        return None
    pid = state.get("pid")
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            arguments = f.read().split(b"\0")
    except OSError:   # no such process (or no /proc: then we cannot tell, and assume it is gone)
        return None
    return pid if f"local_results_path={folder}".encode() in arguments else None


def plan(cell, folder, retry_failed, extend=False):
    """What to do with a cell: ("skip", state) or ("run", command). A done cell whose final
    checkpoint is below the grid's t_max (its budget was raised) goes on from that checkpoint with
    `extend`, if the checkpoint holds the full state; otherwise it stays done, its state saying at
    which step it ended (`below_budget`) and whether it could go on (`can_extend`)."""
    state = read_state(folder)
    status = state and state.get("status")
    if status == "failed" and not retry_failed:
        return "skip", state
    if status == "done":
        final = newest_checkpoint(folder, full_only=False)
        if final is None or final[0] >= cell.t_max:
            return "skip", state
        step, models_dir, full = final
        if not (extend and full):
            return "skip", dict(state, below_budget=step, can_extend=full)
        return "run", cell_command(cell, folder, resume_from=models_dir)
    return "run", cell_command(cell, folder, resume_from=resumable_checkpoint(folder))


def run_cell(cell_id, folder, command, torch_threads=1, processes=None):
    """Run one cell's command to its end; write and return its final state. `processes`
    (backends.LocalProcesses) starts main.py, or refuses once a stop was asked for: then the state
    returned is `not started` and nothing is written."""
    os.makedirs(folder, exist_ok=True)
    previous = read_state(folder) or {}
    state = {"cell": cell_id, "status": "running", "command": command, "attempt": previous.get("attempt", 0) + 1,
             "host": os.uname().nodename, "worker_pid": os.getpid()}
    env = dict(os.environ, OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads),
               SALE_MARL_STOP_WITH_PARENT=str(os.getpid()))   # main.py stops (SIGTERM) if this process dies
    stderr_path = os.path.join(folder, "stderr.log")
    header = f"=== attempt {state['attempt']}: {' '.join(command)}\n"
    stderr_from = []   # where this attempt's stderr starts in stderr.log
    with open(os.path.join(folder, "stdout.log"), "a") as out, open(stderr_path, "a") as err:
        def start():
            out.write(header)
            err.write(header)
            out.flush()
            err.flush()
            stderr_from.append(err.tell())
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=folder,
                                       start_new_session=True)
            state.update(started=time.time(), pid=process.pid)
            write_state(folder, state)
            return process

        process = processes.start(start) if processes is not None else start()
        if process is None:
            return {"cell": cell_id, "status": "not started"}
        try:
            returncode = wait_for(process)
        finally:
            if processes is not None:
                processes.forget(process)
    with open(stderr_path) as err:
        err.seek(stderr_from[0])
        tail = err.read().splitlines()[-STDERR_TAIL_LINES:]
    status = "done" if returncode == 0 else "interrupted" if returncode in INTERRUPTED_CODES else "failed"
    state.update(status=status, returncode=returncode, finished=time.time(), stderr_tail="\n".join(tail))
    write_state(folder, state)
    return state


def wait_for(process):
    """main.py's return code. A KeyboardInterrupt meanwhile (how Ray cancels a running task) is passed
    on as SIGTERM, so main.py saves a checkpoint; its return code is returned once it has exited.
    Waits in short polls: Ray raises the KeyboardInterrupt in this thread, which a blocking wait
    would not see until main.py ended."""
    try:
        while True:
            try:
                return process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        return process.wait()


def env_steps(folder):
    """The newest env step the cell's newest Sacred run has logged (0 before its first log)."""
    runs = glob.glob(os.path.join(folder, "sacred", "*", "*", "*", "metrics.json"))
    if not runs:
        return 0
    newest = max(runs, key=lambda path: int(os.path.basename(os.path.dirname(path))))
    try:
        with open(newest) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return 0
    return last_logged_step(metrics)


def last_logged_step(metrics):
    """The highest env step any metric of a Sacred `metrics.json` (as loaded) logged; 0 if none."""
    return max((max(entry.get("steps") or [0]) for entry in metrics.values()), default=0)
