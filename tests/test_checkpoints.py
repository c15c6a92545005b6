"""Checkpoints through the real entry point: evaluate, damaged files, resume after SIGKILL."""
import os
import signal
import subprocess
import time

import pytest

from helpers import TINY, main_command, metric, models_dir, read_json, run_main, sacred_runs

LBF = ["env_args.key=lbforaging:Foraging-5x5-2p-1f-v3", "epsilon_anneal_time=500"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    results = tmp_path_factory.mktemp("trained")
    result = run_main("qmix", "lbf", results, [*TINY, *LBF, "save_model=True", "save_model_interval=250"])
    assert result.returncode == 0, result.stderr[-3000:]
    return results


def test_checkpoints_are_complete_folders_named_by_step(trained):
    folder = models_dir(trained)
    steps = sorted(int(s) for s in os.listdir(folder))
    assert len(steps) >= 3 and steps[-1] >= 600
    assert not [name for name in os.listdir(folder) if not name.isdigit()]   # no temporary leftovers
    files = set(os.listdir(os.path.join(folder, str(steps[-1]))))
    assert {"agent.th", "mixer.th", "opt.th", "target_agent.th", "buffer.th", "run_state.th",
            "runner_state.th", "manifest.json"} <= files


def test_evaluate_runs_test_episodes_only(trained, tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, "evaluate=True", "test_nepisode=3",
                                                f"checkpoint_path={models_dir(trained)}"])
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = sacred_runs(tmp_path, "qmix")
    metrics = read_json(run, "metrics.json")
    assert "test_return_mean" in metrics
    assert "loss" not in metrics and "return_mean" not in metrics          # no training happened
    assert not os.path.exists(tmp_path / "models")


def test_evaluate_without_checkpoint_is_an_error(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, "evaluate=True"])
    assert result.returncode == 2 and "evaluate=True needs checkpoint_path" in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_damaged_checkpoint_is_named_before_the_run_starts(trained, tmp_path, damage):
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(models_dir(trained), copy)
    newest = copy / str(max(int(s) for s in os.listdir(copy)))
    agent = newest / "agent.th"
    if damage == "truncate":
        agent.write_bytes(agent.read_bytes()[:50])
    elif damage == "garbage":
        agent.write_bytes(b"x" * agent.stat().st_size)
    else:
        agent.unlink()
    result = run_main("qmix", "lbf", tmp_path, [*TINY, *LBF, "evaluate=True", f"checkpoint_path={copy}"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "agent.th" in result.stderr and str(newest) in result.stderr
    assert not os.path.exists(tmp_path / "sacred")


def test_checkpoint_path_that_does_not_exist(tmp_path):
    result = run_main("qmix", "lbf", tmp_path, [*TINY, "evaluate=True", f"checkpoint_path={tmp_path}/nope"])
    assert result.returncode == 2 and "does not exist" in result.stderr


# Imagination starts sampled (their RNG), H = 3 (its errors logged) and the model on every 3rd update
# (the phase goes on across the checkpoint)
SALE_MB_RESUME = ["wm_warmup=2", "sale_refresh_interval=5", "target_update_interval_or_tau=7",
                  "imagination_starts=8", "rollout_depth=3", "model_update_interval=3"]


@pytest.mark.parametrize("alg, runner", [("qmix", "episode"), ("qmix", "parallel"), ("sale_mb", "episode"),
                                         ("mappo", "parallel")])
def test_resume_after_sigkill_continues_the_metrics(tmp_path, alg, runner):
    """A run killed with SIGKILL and resumed logs the same metrics as one that was never stopped.
    For sale_mb this covers the world model, the fixed SALE encoders (refreshed on both sides of
    the checkpoint), both optimisers, the target range and the RNG that samples imagination starts.
    For mappo: both optimisers, the soft-updated target critic, running reward statistics and the
    RNG that shuffles minibatches."""
    overrides = [*TINY, *LBF, "t_max=1500", "save_model=True", "save_model_interval=500", f"runner={runner}"]
    if runner == "parallel":
        overrides.append("batch_size_run=2")
    if alg == "sale_mb":
        overrides += SALE_MB_RESUME
    if alg == "mappo":
        overrides += ["batch_size=2", "buffer_size=2", "minibatches=2"]
    reference = tmp_path / "reference"
    reference.mkdir()
    result = run_main(alg, "lbf", reference, overrides)
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    killed.mkdir()
    process = subprocess.Popen(main_command(alg, "lbf", killed, overrides), cwd=killed,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        models = killed / "models"
        if models.exists() and any(any(s.isdigit() and int(s) >= 500 for s in os.listdir(tok)) for tok in models.iterdir()):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    token = models_dir(killed)
    resumed = run_main(alg, "lbf", killed, [*overrides, "resume=True", f"checkpoint_path={token}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed at t_env=" in resumed.stderr

    expected = read_json(sacred_runs(reference, alg)[0], "metrics.json")
    got = read_json(sacred_runs(killed, alg)[-1], "metrics.json")
    keys = ["return_mean", "test_return_mean", "epsilon", "q_taken_mean"]
    keys += ["pg_loss", "critic_loss", "approx_kl", "entropy"] if alg == "mappo" else ["loss"]
    if alg == "sale_mb":
        keys += ["wm_loss", "imagined_td_loss", "agent_sale_loss", "joint_sale_loss", "wm_latent_error_3step"]
    for key in keys:
        assert [t for t, _ in metric(got, key)] == [t for t, _ in metric(expected, key)], key
        for (_, a), (_, b) in zip(metric(got, key), metric(expected, key)):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), key
    assert sorted(os.listdir(token), key=int) == sorted(os.listdir(models_dir(reference)), key=int)
