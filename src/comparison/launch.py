"""Run a grid: plan every cell (skip, run or resume), hand the cells to run to a backend, show
progress, and say which cells failed (with their command and the end of their stderr)."""
import os
import shlex
import sys

import yaml

from comparison import cells
from comparison.grid import expand
from comparison.progress import GridProgress
from run_config import ConfigError


def describe(cell, action, detail):
    """A --dry-run line: the cell, what a run would do with it, and its command."""
    if action == "run":
        what, command = ("resume" if "resume=True" in detail else "run"), detail
    elif detail["status"] == "failed":
        what, command = "skip (failed; --retry-failed runs it)", detail["command"]
    elif "below_budget" in detail:
        what, command = f"skip (done at {detail['below_budget']:,} env steps, {extend_hint(detail)})", detail["command"]
    else:
        what, command = "skip (done)", detail["command"]
    return f"{cell.cell_id}: {what}\n    {shlex.join(command)}"


def extend_hint(state):
    """What a done cell below the grid's t_max can do."""
    if state["can_extend"]:
        return "below t_max: --extend takes it on from there"
    return ("below t_max, and its final checkpoint lacks the full state to go on from (save_full_state=False): "
            "remove its folder to run it again")


def failure_text(state):
    tail = "\n".join(f"    {line}" for line in state["stderr_tail"].splitlines())
    return (f"cell {state['cell']} failed (exit code {state['returncode']})\n"
            f"  command: {shlex.join(state['command'])}\n  stderr (last lines):\n{tail}")


def run_grid(grid, grid_dir, run_cells, retry_failed=False, dry_run=False, extend=False):
    """Run the grid's unfinished cells with `run_cells(jobs, poll)` (a backend); returns True when
    every cell is done. `grid_dir/cells.yaml` records each cell's config, env config, seed and
    overrides."""
    grid_cells = expand(grid)
    folders = [cells.cell_folder(grid_dir, cell) for cell in grid_cells]
    busy = [(cell.cell_id, pid) for cell, folder in zip(grid_cells, folders)
            if (pid := cells.running_elsewhere(folder, cells.read_state(folder)))]
    if busy:
        listed = ", ".join(f"{cell_id} (main.py pid {pid})" for cell_id, pid in busy)
        raise ConfigError(f"cells of this grid are running in other processes, e.g. another compare.py on it: "
                          f"{listed}. Wait for them, or stop that compare.py (kill its pid: its cells save a "
                          f"checkpoint, and running this command again resumes them).")
    plans = [cells.plan(cell, folder, retry_failed, extend) for cell, folder in zip(grid_cells, folders)]
    if dry_run:
        for cell, plan in zip(grid_cells, plans):
            print(describe(cell, *plan))
        return True

    os.makedirs(grid_dir, exist_ok=True)
    with open(os.path.join(grid_dir, "cells.yaml"), "w") as f:
        yaml.safe_dump({cell.cell_id: {"config": cell.alg.config, "env_config": cell.env.config, "seed": cell.seed,
                                       "with": list(cell.overrides)} for cell in grid_cells}, f, sort_keys=False)
    jobs = []
    for cell, folder, (action, detail) in zip(grid_cells, folders, plans):
        if action == "run":
            state = cells.read_state(folder)
            if state and state.get("status") == "running":   # left by an interrupted invocation
                cells.write_state(folder, dict(state, status="interrupted"))
            jobs.append((cell.cell_id, folder, detail))

    progress = GridProgress(grid_cells, folders, grid.name, queued=[folder for _, folder, _ in jobs])
    failed = False
    for state in run_cells(jobs, progress.refresh):
        if state["status"] == "failed":
            failed = True
            progress.write(failure_text(state))
        progress.refresh()
    progress.close()
    for action, detail in plans:
        if action == "skip" and "below_budget" in detail:
            print(f"cell {detail['cell']} is done at {detail['below_budget']:,} env steps, {extend_hint(detail)}",
                  file=sys.stderr)
        if action == "skip" and detail["status"] == "failed":
            failed = True
            print(f"cell {detail['cell']} failed earlier (not rerun; add --retry-failed): "
                  f"{shlex.join(detail['command'])}", file=sys.stderr)
    return not failed
