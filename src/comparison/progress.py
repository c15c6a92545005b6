"""The grid's progress on one line (tqdm): env steps of all cells against their budgets, ETA,
and cells done / running / failed, read from the cells' own files (so Ray workers report too)."""
from tqdm import tqdm

from comparison import cells


class GridProgress:
    def __init__(self, grid_cells, folders, name):
        self.cells = list(zip(grid_cells, folders))
        self.bar = tqdm(total=sum(cell.t_max for cell in grid_cells), initial=self._steps(), unit="step",
                        unit_scale=True, desc=name, dynamic_ncols=True)
        self.refresh()

    def _statuses(self):
        return [(cells.read_state(folder) or {}).get("status") for _, folder in self.cells]

    def _steps(self, statuses=None):
        statuses = statuses or self._statuses()
        return sum(cell.t_max if status == "done" else min(cells.env_steps(folder), cell.t_max)
                   for (cell, folder), status in zip(self.cells, statuses))

    def refresh(self):
        statuses = self._statuses()
        self.bar.update(self._steps(statuses) - self.bar.n)
        self.bar.set_postfix_str(
            f"cells: {statuses.count('done')}/{len(statuses)} done, {statuses.count('running')} running, "
            f"{statuses.count('failed')} failed")

    def close(self):
        self.refresh()
        self.bar.close()
