"""Runs ``batch_size_run`` environments in worker processes, stepped in lockstep."""
import multiprocessing
import time

import numpy as np

from envs import REGISTRY as env_REGISTRY
from envs.env_worker import env_worker
from runners.base_runner import BaseRunner

POLL_SECONDS = 1.0  # how often a waiting runner checks that its workers are alive
REPLY_TIMEOUT_SECONDS = 600.0  # a worker silent for this long is taken as hung
CLOSE_TIMEOUT_SECONDS = 5.0


class ParallelRunner(BaseRunner):
    """Collects ``batch_size_run`` episodes per ``run``, one per worker process.

    All envs step together; an env whose episode has ended is no longer stepped while the others
    finish. Env i gets seed ``env_args["seed"] + i``. The batch layout is the episode runner's.
    A worker whose env raises, or that dies, makes the runner raise a RuntimeError naming it
    (with the remote traceback); the runner then shuts every worker down. Workers are spawned
    (not forked), so they inherit no threads or locks from the training process; a spawned worker
    re-imports the main script, so a script's heavy imports belong inside its functions.
    """

    def __init__(self, args, logger):
        super().__init__(args, logger)
        self.batch_size = args.batch_size_run
        context = multiprocessing.get_context("spawn")
        self._conns, self._workers = [], []
        env_fn = env_REGISTRY[args.env]
        base_seed = args.env_args.get("seed")
        try:
            for worker_id in range(self.batch_size):
                env_kwargs = dict(args.env_args, common_reward=args.common_reward,
                                  reward_scalarisation=args.reward_scalarisation)
                env_kwargs["seed"] = None if base_seed is None else base_seed + worker_id
                conn, worker_conn = context.Pipe()
                worker = context.Process(target=env_worker, args=(worker_conn, env_fn, env_kwargs),
                                         name=f"env_worker_{worker_id}", daemon=True)
                worker.start()
                worker_conn.close()
                self._conns.append(conn)
                self._workers.append(worker)
            for worker_id in range(self.batch_size):
                self._receive(worker_id)
            self.env_info = self._call(0, "get_env_info")
        except BaseException:
            self._shutdown()
            raise
        self.episode_limit = self.env_info["episode_limit"]
        self.n_agents = self.env_info["n_agents"]
        self._env_step_seconds = [0.0] * self.batch_size

    @property
    def env_step_seconds(self):
        """Seconds the envs spent inside their simulators' step, summed over workers."""
        return sum(self._env_step_seconds)

    def get_env_info(self):
        return self.env_info

    # --- talking to workers ----------------------------------------------------------------------
    def _send(self, worker_id, command, payload=None):
        if not self._workers:
            raise RuntimeError("the parallel runner's env workers have been shut down")
        try:
            self._conns[worker_id].send((command, payload))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self._fail(self._death_message(worker_id))

    def _receive(self, worker_id):
        conn, worker = self._conns[worker_id], self._workers[worker_id]
        waited = 0.0
        while not conn.poll(POLL_SECONDS):
            waited += POLL_SECONDS
            if not worker.is_alive():
                self._fail(self._death_message(worker_id))
            if waited >= REPLY_TIMEOUT_SECONDS:
                self._fail(f"env worker {worker_id} (pid {worker.pid}) sent no reply in "
                           f"{REPLY_TIMEOUT_SECONDS:.0f} s; it seems hung")
        try:
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            self._fail(self._death_message(worker_id))
        if status == "error":
            self._fail(f"env worker {worker_id} raised an exception. Remote traceback:\n{payload}")
        return payload

    def _call(self, worker_id, command, payload=None):
        self._send(worker_id, command, payload)
        return self._receive(worker_id)

    def _death_message(self, worker_id):
        worker = self._workers[worker_id]
        worker.join(timeout=POLL_SECONDS)
        code = worker.exitcode
        if code is None:
            return f"env worker {worker_id} (pid {worker.pid}) closed its connection"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"env worker {worker_id} (pid {worker.pid}) died: it {how}"

    def _fail(self, message):
        """Shuts every worker down and raises: the runner cannot go on after a worker failed."""
        self._shutdown()
        raise RuntimeError(message)

    # --- episodes --------------------------------------------------------------------------------
    def reset(self):
        self.batch = self.new_batch()
        self.writer.attach(self.batch)
        for worker_id in range(self.batch_size):
            self._send(worker_id, "reset")
        self.t = 0
        return [self._receive(worker_id) for worker_id in range(self.batch_size)]

    def run(self, test_mode=False):
        replies = self.reset()
        mac, batch, writer, n_envs = self.mac, self.batch, self.writer, self.batch_size
        render = test_mode and self.args.render
        self._write_pre_transition(writer, replies, slice(None), 0)
        if render:
            self._call(0, "render")
        mac.init_hidden(batch_size=n_envs)

        returns = [0.0 if self.args.common_reward else np.zeros(self.n_agents) for _ in range(n_envs)]
        lengths, final_infos, done = [0] * n_envs, [{}] * n_envs, [False] * n_envs
        acting = list(range(n_envs))  # envs with data at step t: running ones and those just ended
        t = 0
        while True:
            bs = slice(None) if len(acting) == n_envs else acting
            actions = mac.select_actions(batch, t_ep=t, t_env=self.t_env, bs=bs, test_mode=test_mode).cpu().numpy()
            stored = actions.reshape(*actions.shape[:2], -1)  # indices [.., n, 1] or continuous [.., n, dims]
            writer.write({"actions": stored}, bs, t, mark_filled=False)
            stepping = [env_id for env_id in acting if not done[env_id]]
            if not stepping:
                break
            for env_id, env_actions in zip(acting, actions.tolist()):
                if not done[env_id]:
                    self._send(env_id, "step", env_actions)

            replies, rewards, terminals = [], [], []
            for env_id in stepping:
                state, avail, obs, reward, terminated, truncated, info, step_seconds = self._receive(env_id)
                self._env_step_seconds[env_id] = step_seconds
                returns[env_id] += reward
                replies.append((state, avail, obs))
                rewards.append(reward)
                terminals.append(terminated)
                if terminated or truncated or t + 1 >= self.episode_limit:
                    done[env_id] = True
                    lengths[env_id] = t + 1
                    final_infos[env_id] = info
            bs = slice(None) if len(stepping) == n_envs else stepping
            writer.write({"reward": np.asarray(rewards, dtype=np.float32).reshape(len(stepping), -1),
                          "terminated": np.asarray(terminals, dtype=np.uint8).reshape(len(stepping), 1)},
                         bs, t, mark_filled=False)
            t += 1
            self._write_pre_transition(writer, replies, bs, t)
            if render and not done[0]:
                self._call(0, "render")
            acting = stepping

        self.t = t
        self._episodes_finished(list(zip(returns, lengths, final_infos)), test_mode)
        return batch

    @staticmethod
    def _write_pre_transition(writer, replies, bs, t):
        states, avails, observations = zip(*replies)
        writer.write({"state": np.stack(states), "avail_actions": np.stack(avails),
                      "obs": np.stack(observations)}, bs, t)

    # --- checkpoints, replays, shutdown ----------------------------------------------------------
    def _env_rng_states(self):
        return [self._call(worker_id, "get_rng_state") for worker_id in range(self.batch_size)]

    def _set_env_rng_states(self, rng_states):
        for worker_id, rng_state in enumerate(rng_states):
            self._call(worker_id, "set_rng_state", rng_state)

    def save_replay(self):
        for worker_id in range(self.batch_size):
            self._call(worker_id, "save_replay")

    def close_env(self):
        self._shutdown()

    def _shutdown(self):
        """Asks each worker to close its env; terminates (then kills) any that does not exit in time."""
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                pass
        deadline = time.monotonic() + CLOSE_TIMEOUT_SECONDS
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=CLOSE_TIMEOUT_SECONDS)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._workers = [], []
