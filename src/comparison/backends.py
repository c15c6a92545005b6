"""Backends that run cells: a local pool of processes, or Ray tasks on a machine or a cluster.

Both take jobs `(cell_id, folder, command)`, run `cells.run_cell` on each and yield each cell's
final state as it finishes; `poll()` is called every `POLL_S` seconds meanwhile (progress).
"""
import concurrent.futures
import os
import signal
import threading

from comparison import cells

POLL_S = 2.0
RAY_MISSING = "--ray needs Ray: pip install -e .[ray] (or pip install ray==2.60.0)."


def free_cores():
    """Cores not busy now: the cores this process may use minus the 1-minute load, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores - round(os.getloadavg()[0]))


class LocalProcesses:
    """The main.py processes of the local pool: `stop(signum)` passes a signal on to each running one
    (it saves a checkpoint and exits) and makes `start` refuse every later cell."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = set()
        self._stopping = False

    def start(self, launch):
        """`launch()` -> a Popen, unless a stop came first (None)."""
        with self._lock:   # a stop either sees this process or keeps it from starting
            if self._stopping:
                return None
            process = launch()
            self._running.add(process)
            return process

    def forget(self, process):
        with self._lock:
            self._running.discard(process)

    def stop(self, signum):
        with self._lock:
            self._stopping = True
            for process in self._running:
                process.send_signal(signum)


def run_local(jobs, poll, workers, processes=None):
    """Each worker thread runs one main.py process at a time (the processes do the work)."""
    processes = processes or LocalProcesses()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(cells.run_cell, *job, processes=processes) for job in jobs}
        while pending:
            finished, pending = concurrent.futures.wait(
                pending, timeout=POLL_S, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                yield future.result()
            poll()


def connect_ray(address):
    """Join the cluster at `address` ("auto", "ray://head:10001"); None: Ray's own search (RAY_ADDRESS,
    then an instance `ray start` began on this machine, else a new local instance).
    Returns (ray, whether this call made the connection)."""
    try:
        import ray
    except ImportError:
        raise SystemExit(RAY_MISSING) from None
    if ray.is_initialized():
        return ray, False
    ray.init(address=address or None, log_to_driver=False)
    return ray, True


class StopFlag:
    """Set from a signal handler (`stop(signum)`); `run_ray` cancels its tasks when it sees it."""

    def __init__(self):
        self.signum = None

    def stop(self, signum):
        self.signum = signum


def run_ray(jobs, poll, address, cpus, gpus, stop=None):
    """One plain Ray task per cell, asking for `cpus` CPUs and `gpus` GPUs (fractions allowed).

    The repository and the grid folder must be at the same path on every node (a shared file
    system, as on Slurm clusters); `cells` is shipped by value, so workers need no extra set-up.
    Once `stop` (a StopFlag) is set, every task is cancelled: queued ones never start, running
    ones pass SIGTERM to their main.py (`cells.wait_for`), which saves a checkpoint; this waits for
    them to end.
    """
    on_sigterm = signal.getsignal(signal.SIGTERM)
    ray, started = connect_ray(address)
    signal.signal(signal.SIGTERM, on_sigterm)   # ray.init makes SIGTERM exit the driver at once
    ray.cloudpickle.register_pickle_by_value(cells)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(cells.run_cell)
    cancelled = False
    try:
        pending = [task.remote(*job, torch_threads=max(1, int(cpus))) for job in jobs]
        while pending:
            if stop is not None and stop.signum is not None and not cancelled:
                for ref in pending:
                    ray.cancel(ref)
                cancelled = True
            finished, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            for ref in finished:
                try:
                    yield ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    pass   # a queued cell, or a stopped one (its cell.json says which)
            poll()
    finally:
        if started:
            ray.shutdown()
