"""Run statistics: one `log_stat` call feeds the console summary, Sacred, TensorBoard and added sinks."""
import logging
import sys
from collections import defaultdict

import numpy as np


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time, so Sacred's output capture sees it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def get_console_logger(name="sale_marl"):
    """A console logger with EPyMARL's "[LEVEL time] name message" format, set up once."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s] %(name)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class Logger:
    """Collects `(t, value)` series per key and forwards each value to the enabled sinks.

    The full history is kept so that a resumed run can replay it into its new Sacred run
    (`state_dict` / `load_state_dict`).
    """

    def __init__(self, console_logger):
        self.console_logger = console_logger
        self.stats = defaultdict(list)
        self._sacred_run = None
        self._tb_writer = None
        self._sinks = []  # more sinks (e.g. W&B): log(key, value, t), log_checkpoint(path, t), close()

    def setup_sacred(self, sacred_run):
        self._sacred_run = sacred_run

    def setup_tb(self, directory):
        from torch.utils.tensorboard import SummaryWriter
        self._tb_writer = SummaryWriter(log_dir=directory)

    def add_sink(self, sink):
        self._sinks.append(sink)

    def log_checkpoint(self, path, t):
        """Tell the sinks a checkpoint was saved in ``path`` at env step ``t``."""
        for sink in self._sinks:
            sink.log_checkpoint(path, t)

    def log_stat(self, key, value, t):
        value = float(value.item()) if hasattr(value, "item") else value
        self.stats[key].append((t, value))
        self._to_sinks(key, value, t)

    def _to_sinks(self, key, value, t):
        if self._sacred_run is not None:
            self._sacred_run.log_scalar(key, value, t)
        if self._tb_writer is not None:
            self._tb_writer.add_scalar(key, value, t)
        for sink in self._sinks:
            sink.log(key, value, t)

    def latest(self, key, default=None):
        series = self.stats.get(key)
        return series[-1][1] if series else default

    def print_recent_stats(self, header=""):
        """Print the mean of the last few values of every stat (the last one for `episode`)."""
        if not self.stats:
            return
        t = self.stats["episode"][-1][0] if "episode" in self.stats else max(s[-1][0] for s in self.stats.values())
        lines = [f"Recent stats | t_env: {t:>10} | {header}".rstrip(" |")]
        cells = []
        for key in sorted(self.stats):
            if key == "episode":
                continue
            window = 5 if key != "epsilon" else 1
            cells.append(f"{key + ':':<26}{np.mean([v for _, v in self.stats[key][-window:]]):>10.4f}")
        if "episode" in self.stats:
            cells.insert(0, f"{'episode:':<26}{self.stats['episode'][-1][1]:>10}")
        for i in range(0, len(cells), 4):
            lines.append("    ".join(cells[i:i + 4]))
        self.console_logger.info("\n".join(lines))

    def state_dict(self):
        return {key: list(series) for key, series in self.stats.items()}

    def load_state_dict(self, state, replay_to_sinks=True):
        """Restore the history; with `replay_to_sinks`, re-log it to Sacred/TensorBoard."""
        self.stats = defaultdict(list)
        for key, series in state.items():
            for t, value in series:
                self.stats[key].append((t, value))
                if replay_to_sinks:
                    self._to_sinks(key, value, t)

    def close(self):
        if self._tb_writer is not None:
            self._tb_writer.close()
        for sink in self._sinks:
            sink.close()
