"""The loop of a worker process that owns one env (used by the parallel runner).

It lives here, away from the runners, so that a spawned worker imports no torch.
"""
import signal
import traceback


def env_worker(conn, env_fn, env_kwargs):
    """Owns one env and answers ``(command, payload)`` messages with ``("ok", result)``, or with
    ``("error", traceback text)`` when the env raises. Ctrl-C and SIGTERM are left to the main
    process, which saves a checkpoint (it needs the env) and then closes the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        env = env_fn(**env_kwargs)
    except Exception:
        conn.send(("error", traceback.format_exc()))
        conn.close()
        return
    conn.send(("ok", None))
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:  # the main process is gone
            return
        if command == "close":
            conn.close()
            env.close()
            return
        try:
            if command == "step":
                obs, reward, terminated, truncated, info = env.step(payload)
                result = (env.get_state(), env.get_avail_actions(), obs, reward, terminated, truncated, info,
                          env.step_seconds)
            elif command == "reset":
                obs, _ = env.reset()
                result = (env.get_state(), env.get_avail_actions(), obs)
            elif command == "get_env_info":
                result = env.get_env_info()
            elif command == "get_rng_state":
                result = env.get_rng_state()
            elif command == "set_rng_state":
                result = env.set_rng_state(payload)
            elif command == "render":
                result = env.render()
            elif command == "save_replay":
                result = env.save_replay()
            else:
                raise ValueError(f"unknown env worker command {command!r}")
        except Exception:
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", result))
