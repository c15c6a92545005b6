"""Run statistics: one `log_stat` call feeds the console summary, Sacred, TensorBoard and added
sinks; and the live progress line of a training run."""
import logging
import sys
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time, so Sacred's output capture sees it, through
    `tqdm.write` so that a live progress bar is redrawn below each message, not broken by it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


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
        self._sinks = []  # more sinks (e.g. W&B): log(key, value, t), log_checkpoint(path, files, t), close(exit_code)

    def setup_sacred(self, sacred_run):
        self._sacred_run = sacred_run

    def setup_tb(self, directory):
        from torch.utils.tensorboard import SummaryWriter
        self._tb_writer = SummaryWriter(log_dir=directory)

    def add_sink(self, sink):
        self._sinks.append(sink)

    def log_checkpoint(self, path, files, t):
        """Tell the sinks a checkpoint holding model ``files`` was saved in ``path`` at env step ``t``."""
        for sink in self._sinks:
            sink.log_checkpoint(path, files, t)

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

    def close(self, exit_code=0):
        """Close every sink; ``exit_code`` != 0 tells them the run failed or was interrupted."""
        if self._tb_writer is not None:
            self._tb_writer.close()
        for sink in self._sinks:
            sink.close(exit_code)


class ProgressLine:
    """Live progress of a training run on stderr: env steps / t_max, steps/s, elapsed, ETA,
    episodes and the latest test return.

    On a terminal it is a tqdm bar redrawn every `min(interval_s, 2)` seconds at most. Otherwise
    (a log file, a pipe, a batch job) the same text is printed as a plain line every `interval_s` seconds,
    so the file gets no carriage returns. Steps/s and the ETA count only this process's steps
    (`start` is where a resumed run began).
    """

    FORMAT = "{n_fmt}/{total_fmt} env steps [{elapsed}<{remaining}, {rate_fmt}]{postfix}"

    def __init__(self, total, start, interval_s, console_logger):
        self.total = total
        self.start = start
        self.interval_s = interval_s
        self.console_logger = console_logger
        self._started = time.time()
        self._last_print = None
        self._bar = None
        if sys.stderr.isatty():
            self._bar = tqdm(total=total, initial=start, file=sys.stderr, mininterval=min(interval_s, 2.0),
                             unit=" steps", bar_format="{l_bar}{bar}| " + self.FORMAT,
                             dynamic_ncols=True)

    @staticmethod
    def _postfix(episode, test_return):
        test_text = "-" if test_return is None else f"{test_return:.3f}"
        return f"episodes={episode}, test return={test_text}"

    def update(self, t_env, episode, test_return):
        """Report that the run is at `t_env` env steps after `episode` episodes."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(episode, test_return), refresh=False)
            self._bar.update(min(t_env, self.total) - self._bar.n)
            return
        now = time.time()
        if self._last_print is not None and now - self._last_print < self.interval_s:
            return
        self._last_print = now
        self.console_logger.info("Progress: %s", self.text(t_env, episode, test_return))

    def text(self, t_env, episode, test_return):
        """The progress as one line of text (also the header of the summary tables)."""
        return tqdm.format_meter(min(t_env, self.total), self.total, time.time() - self._started,
                                 initial=self.start, unit=" steps",
                                 bar_format=self.FORMAT, postfix=self._postfix(episode, test_return))

    def close(self):
        if self._bar is not None:
            self._bar.close()
