"""The grid's progress on one line (tqdm): env steps of all cells against their budgets, ETA,
and cells done / running / failed, read from the cells' own files (so Ray workers report too).
On a terminal it is a live bar; otherwise (a log file) a plain line every `interval_s` seconds and
whenever a cell starts, ends or fails, so the file gets no carriage returns."""
import sys
import time

from tqdm import tqdm

from comparison import cells


class GridProgress:
    def __init__(self, grid_cells, folders, name, queued=(), interval_s=30.0):
        self.cells = list(zip(grid_cells, folders))
        # The cells this invocation runs, by the attempt their state was at: until a new attempt
        # starts, such a cell is queued, even one that still reads done (it is being extended).
        self.attempt_before = {folder: (cells.read_state(folder) or {}).get("attempt", 0) for folder in queued}
        self.name = name
        self.interval_s = interval_s
        self.total = sum(cell.t_max for cell in grid_cells)
        self.start_steps = self._steps(self._statuses())
        self.started = time.time()
        self.counts = None
        self.last_line = None
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(total=self.total, initial=self.start_steps, unit="step", unit_scale=True,
                            desc=name, dynamic_ncols=True, mininterval=0.5)
        self.refresh()

    def _statuses(self):
        return [self._status(folder) for _, folder in self.cells]

    def _status(self, folder):
        state = cells.read_state(folder) or {}
        if state.get("attempt", 0) <= self.attempt_before.get(folder, -1):
            return None   # queued
        return state.get("status")

    def _steps(self, statuses):
        """A finished cell counts its whole budget; others the newest step their run logged."""
        return sum(cell.t_max if status == "done" else min(cells.env_steps(folder), cell.t_max)
                   for (cell, folder), status in zip(self.cells, statuses))

    def refresh(self):
        statuses = self._statuses()
        counts = (statuses.count("done"), statuses.count("running"), statuses.count("failed"))
        postfix = f"cells: {counts[0]}/{len(statuses)} done, {counts[1]} running, {counts[2]} failed"
        steps = self._steps(statuses)
        changed, self.counts = counts != self.counts, counts
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(steps - self.bar.n)
            if changed:
                self.bar.refresh()
            return
        now = time.time()
        if changed or now - self.last_line >= self.interval_s:
            self.last_line = now
            line = tqdm.format_meter(steps, self.total, now - self.started, prefix=self.name, unit="step",
                                     unit_scale=True, initial=self.start_steps, postfix=postfix)
            print(line, file=sys.stderr, flush=True)

    def write(self, text):
        """Print `text` on stderr above the live bar (or between the plain lines)."""
        tqdm.write(text, file=sys.stderr)

    def close(self):
        self.refresh()
        if self.bar is not None:
            self.bar.close()
