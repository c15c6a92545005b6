"""The grid's progress on one line (tqdm): env steps of all cells against their budgets, ETA,
and cells done / running / failed, read from the cells' own files (so Ray workers report too)."""
import sys

from tqdm import tqdm

from comparison import cells


class GridProgress:
    def __init__(self, grid_cells, folders, name):
        self.cells = list(zip(grid_cells, folders))
        self.counts = None
        # Redrawn every 30 s when stderr is a log file rather than a terminal.
        self.bar = tqdm(total=sum(cell.t_max for cell in grid_cells), initial=self._steps(self._statuses()),
                        unit="step", unit_scale=True, desc=name, dynamic_ncols=True,
                        mininterval=0.5 if sys.stderr.isatty() else 30)
        self.refresh()

    def _statuses(self):
        return [(cells.read_state(folder) or {}).get("status") for _, folder in self.cells]

    def _steps(self, statuses):
        """A finished cell counts its whole budget; others the newest step their run logged."""
        return sum(cell.t_max if status == "done" else min(cells.env_steps(folder), cell.t_max)
                   for (cell, folder), status in zip(self.cells, statuses))

    def refresh(self):
        statuses = self._statuses()
        counts = (statuses.count("done"), statuses.count("running"), statuses.count("failed"))
        self.bar.set_postfix_str(f"cells: {counts[0]}/{len(statuses)} done, {counts[1]} running, "
                                 f"{counts[2]} failed", refresh=False)
        self.bar.update(self._steps(statuses) - self.bar.n)
        if counts != self.counts:
            self.counts = counts
            self.bar.refresh()

    def close(self):
        self.refresh()
        self.bar.close()
