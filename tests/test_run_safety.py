"""Runs a user can trust: Ctrl-C/SIGTERM save and resume exactly, resume takes its config from the
checkpoint, values out of range and unknown env arguments are refused, progress is reported."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import MAIN, TINY, main_command, metric, models_dir, read_json, run_main, sacred_runs

LBF = ["env_args.key=lbforaging:Foraging-5x5-2p-1f-v3", "epsilon_anneal_time=500"]
# Checkpoints only when interrupted and at the end: the reference run must write the same files.
RUN = [*TINY, *LBF, "t_max=1500", "save_model_interval=100000", "progress_interval=0.01"]
KEYS = ["return_mean", "test_return_mean", "loss", "epsilon", "q_taken_mean"]
RESUME_LINE = re.compile(r"Resume with: python src/main\.py with resume=True checkpoint_path=(\S+)")


def progress_steps(text):
    return [int(n) for n in re.findall(r"Progress: (\d+)/", text)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    results = tmp_path_factory.mktemp("reference")
    result = run_main("qmix", "lbf", results, RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return results


def interrupt(results, signum):
    """Start a run, send `signum` once it has trained 300+ steps; return (exit code, stderr)."""
    log_path = results / "stderr.txt"
    with open(log_path, "w") as log:
        process = subprocess.Popen(main_command("qmix", "lbf", results, RUN), cwd=results,
                                   stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if any(step >= 300 for step in progress_steps(log_path.read_text())):
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signum)
        code = process.wait(timeout=300)
    return code, log_path.read_text()


@pytest.fixture(scope="module", params=[signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def interrupted(request, tmp_path_factory):
    results = tmp_path_factory.mktemp(signal.Signals(request.param).name)
    code, stderr = interrupt(results, request.param)
    return request.param, results, code, stderr


def test_an_interrupt_saves_marks_the_run_and_says_how_to_resume(interrupted):
    signum, results, code, stderr = interrupted
    assert code == 128 + signum, stderr[-3000:]
    (run,) = sacred_runs(results, "qmix")
    assert read_json(run, "run.json")["status"] == "INTERRUPTED"
    (line,) = RESUME_LINE.findall(stderr)
    assert line == models_dir(results)
    (step,) = os.listdir(line)
    assert 300 <= int(step) < 1500
    files = set(os.listdir(os.path.join(line, step)))
    assert {"buffer.th", "run_state.th", "runner_state.th", "config.json", "manifest.json"} <= files
    assert "Traceback" not in stderr


def test_resuming_with_the_printed_command_continues_the_metrics_exactly(interrupted, reference):
    signum, results, code, stderr = interrupted
    (token,) = RESUME_LINE.findall(stderr)
    resumed = subprocess.run([sys.executable, MAIN, "with", "resume=True", f"checkpoint_path={token}"],
                             capture_output=True, text=True, cwd=results, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = sacred_runs(results, "qmix")
    assert len(runs) == 2 and read_json(runs[-1], "run.json")["status"] == "COMPLETED"
    config = read_json(runs[-1], "config.json")
    assert config["seed"] == 7 and config["t_max"] == 1500 and config["env_args"]["key"].endswith("5x5-2p-1f-v3")
    expected = read_json(sacred_runs(reference, "qmix")[0], "metrics.json")
    got = read_json(runs[-1], "metrics.json")
    for key in KEYS:
        assert [t for t, _ in metric(got, key)] == [t for t, _ in metric(expected, key)], key
        for (_, a), (_, b) in zip(metric(got, key), metric(expected, key)):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), key


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    import logging

    from run import StopRequest

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        with StopRequest(logging.getLogger("test_stop")) as stop:
            os.kill(os.getpid(), signal.SIGTERM)      # the handler runs before kill returns
            assert stop.signum == signal.SIGTERM       # first: a request, no exception
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("a second signal must raise KeyboardInterrupt at once")
    assert {signum: signal.getsignal(signum) for signum in previous} == previous


def test_a_run_whose_launcher_is_already_gone_does_not_start(tmp_path):
    """SALE_MARL_STOP_WITH_PARENT names the launcher (the comparison tool sets it); a run whose parent is
    not that process any more (it died before main.py could ask to be stopped with it) does nothing."""
    done = subprocess.run(main_command("qmix", "matrix_game", tmp_path, TINY), capture_output=True, text=True,
                          env=dict(os.environ, SALE_MARL_STOP_WITH_PARENT=str(os.getpid() + 10 ** 6)))
    assert done.returncode == 128 + signal.SIGTERM
    assert "the process that started this run is gone" in done.stderr
    assert not os.path.exists(tmp_path / "sacred")


def test_a_repeated_sigterm_keeps_the_stop_that_saves():
    import logging

    from run import StopRequest

    with StopRequest(logging.getLogger("test_stop")) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)   # e.g. a launcher's threads exiting one after another
        assert stop.signum == signal.SIGTERM


@pytest.fixture
def checkpoint_copy(interrupted, tmp_path):
    """A copy of the interrupted run's models folder, for resumes that may write into it."""
    _, results, _, _ = interrupted
    copy = tmp_path / "models" / os.path.basename(models_dir(results))
    shutil.copytree(models_dir(results), copy)
    return copy


@pytest.mark.parametrize("alg, env, overrides, named", [
    (None, None, ["lr=0.001"], "lr: saved 0.0005, given 0.001"),
    ("vdn", "lbf", [], "mixer: saved 'qmix', given 'vdn'"),
    (None, None, ["seed=8"], "seed: saved 7, given 8"),
    (None, None, ["env_args.kwargs.max_num_food=3"], "env_args.kwargs.max_num_food: saved (not set), given 3"),
    ("qmix", "lbf", [], "buffer_size: saved 64, given 5000"),       # the file's value, not the run's
])
def test_resume_refuses_a_changed_key_naming_both_values(checkpoint_copy, alg, env, overrides, named):
    from resume import resume_config
    from run_config import ConfigError, parse_overrides

    with pytest.raises(ConfigError) as error:
        resume_config(alg, env, parse_overrides(["resume=True", f"checkpoint_path={checkpoint_copy}", *overrides]))
    assert named in str(error.value) and "may change on resume: t_max" in str(error.value)


def test_resume_takes_the_saved_config_and_only_the_allowed_changes(checkpoint_copy):
    from resume import resume_config
    from run_config import parse_overrides

    config = resume_config("qmix", "lbf", parse_overrides(
        ["resume=True", f"checkpoint_path={checkpoint_copy}", *RUN, "t_max=3000", "use_wandb=True",
         "wandb_mode=disabled"]))
    assert config["t_max"] == 3000 and config["seed"] == 7 and config["buffer_size"] == 64   # not the env file's
    assert config["use_wandb"] is True and config["wandb_mode"] == "disabled"   # trackers may be switched on
    assert config["checkpoint_path"] == str(checkpoint_copy) and config["resume"] is True


def test_resume_applies_a_new_t_max(checkpoint_copy, tmp_path):
    result = subprocess.run([sys.executable, MAIN, "with", "resume=True", f"checkpoint_path={checkpoint_copy}",
                             "t_max=2000", f"local_results_path={tmp_path}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = sacred_runs(tmp_path, "qmix")
    assert read_json(run, "config.json")["t_max"] == 2000
    assert metric(read_json(run, "metrics.json"), "return_mean")[-1][0] > 1500
    assert max(int(step) for step in os.listdir(models_dir(tmp_path))) >= 2000


def test_progress_is_reported_from_the_start_without_carriage_returns(interrupted):
    _, results, _, stderr = interrupted
    lines = stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if "Progress: " in line)
    assert "Progress: 0/1500 env steps" in lines[first]
    assert "Beginning training" in lines[first - 1]                  # printed before any episode
    assert re.search(r"Progress: \d+/1500 env steps \[.*steps/s\], episodes=\d+, test return=\d", stderr)
    run = sacred_runs(results, "qmix")[0]
    cout = open(os.path.join(run, "cout.txt")).read()
    assert "\r" not in stderr and "\r" not in cout and "Progress: " in cout


def test_progress_is_a_live_bar_on_a_terminal(tmp_path):
    """On a terminal the same line is a tqdm bar redrawn in place (carriage returns)."""
    import pty

    main_fd, child_fd = pty.openpty()
    command = main_command("qmix", "lbf", tmp_path, [*TINY, *LBF, "t_max=300", "progress_interval=0.01"])
    process = subprocess.Popen(command, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=child_fd, stderr=child_fd)
    os.close(child_fd)
    output = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=300) == 0, output[-3000:]
    text = output.decode(errors="replace")
    assert "\r" in text and "env steps [" in text and "Progress: " not in text


@pytest.mark.parametrize("override, named", [
    ("gamma=2", "gamma=2.0 is out of range: gamma must be in (0, 1]"),
    ("lr=-1", "lr=-1.0 is out of range: lr must be > 0"),
    ("epsilon_finish=1.5", "epsilon_finish=1.5 is out of range"),
    ("buffer_size=0", "buffer_size=0 is out of range"),
    ("hypernet_layers=3", "hypernet_layers=3 is out of range"),
    ("progress_interval=0", "progress_interval=0.0 is out of range"),
])
def test_values_out_of_their_declared_range_are_refused(override, named):
    from run_config import ConfigError, build_config, parse_overrides

    with pytest.raises(ConfigError) as error:
        build_config("qmix", "lbf", parse_overrides([override]))
    assert named in str(error.value)


@pytest.mark.parametrize("alg, override, named", [
    ("mappo", "gae_lambda=1.5", "gae_lambda=1.5 is out of range: gae_lambda must be in [0, 1]"),
    ("mappo", "value_loss_clip=0", "value_loss_clip=0 is out of range: value_loss_clip must be > 0"),
    ("sale_mb", "imagination_starts=0", "imagination_starts=0 is out of range: imagination_starts must be >= 1"),
])
def test_nullable_keys_refuse_numbers_out_of_range_and_take_null(alg, override, named):
    from run_config import ConfigError, build_config, parse_overrides

    with pytest.raises(ConfigError) as error:
        build_config(alg, "lbf", parse_overrides([override]))
    assert named in str(error.value)
    key = override.split("=")[0]
    assert build_config(alg, "lbf", parse_overrides([f"{key}=null"]))[key] is None


def test_every_alg_and_env_file_meets_the_declared_ranges():
    from run_config import available_configs, build_config, declared_ranges

    ranges = declared_ranges()
    assert {"gamma", "lr", "epsilon_start", "epsilon_finish", "buffer_size", "batch_size", "hidden_dim"} <= set(ranges)
    pairs = [(alg, "lbf") for alg in available_configs("algs")] + [("qmix", env) for env in available_configs("envs")]
    for alg, env in pairs:
        build_config(alg, env, [], check_names=False)      # raises ConfigError naming a value out of range


def test_out_of_range_value_stops_the_entry_point_before_the_run(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, "gamma=2"])
    assert result.returncode == 2 and "gamma must be in (0, 1]" in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


def test_unknown_env_kwargs_are_refused_before_the_run(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, "env_args.kwargs.max_num_fod=3"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "takes no argument 'max_num_fod'" in result.stderr and "Did you mean 'max_num_food'" in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


def test_mamujoco_kwargs_are_checked_against_the_mujoco_env():
    from envs.mamujoco import check_requirements

    check_requirements(scenario="HalfCheetah", kwargs={"ctrl_cost_weight": 0.1})
    with pytest.raises(ValueError, match="HalfCheetahEnv .* takes no argument 'ctrl_cost_wieght'"):
        check_requirements(scenario="HalfCheetah", kwargs={"ctrl_cost_wieght": 0.1})


def test_an_unwritable_results_folder_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_main("qmix", "lbf", tmp_path, [*TINY, f"local_results_path={blocker}/results"])
    assert result.returncode == 2
    assert f"results folder {blocker}/results is not writable" in result.stderr
    assert "local_results_path" in result.stderr


def test_a_buffer_larger_than_memory_is_refused(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, "buffer_size=1000000000"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.search(r"The replay buffer needs [\d.]+ GB when full \(buffer_size=1000000000", result.stderr)
    assert "Lower buffer_size" in result.stderr
    assert not os.path.exists(tmp_path / "models")


def test_the_buffer_estimate_is_printed_at_start(reference):
    (run,) = sacred_runs(reference, "qmix")
    cout = open(os.path.join(run, "cout.txt")).read()
    assert re.search(r"Replay buffer: 64 episodes x 51 steps = [\d.]+ GB when full", cout)
    assert json.loads(open(os.path.join(run, "config.json")).read())["buffer_size"] == 64
