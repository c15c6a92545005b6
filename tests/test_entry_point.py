"""End-to-end runs of the real entry point on Level-Based Foraging with tiny budgets."""
import os

import pytest

from helpers import TINY, metric, read_json, run_main, sacred_runs

LBF_KEY = "env_args.key=lbforaging:Foraging-5x5-2p-1f-v3"


@pytest.mark.parametrize("alg,runner", [("iql", "episode"), ("vdn", "episode"), ("qmix", "episode"),
                                        ("qmix", "parallel"), ("vdn_ns", "parallel")])
def test_training_run_writes_sacred_files_and_metrics(tmp_path, alg, runner):
    overrides = [*TINY, LBF_KEY, f"runner={runner}", "epsilon_anneal_time=500"]
    if runner == "parallel":
        overrides.append("batch_size_run=2")
    result = run_main(alg, "lbf", tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-3000:]

    runs = sacred_runs(tmp_path, alg)
    assert len(runs) == 1 and os.path.basename(os.path.dirname(runs[0])) == "Foraging-5x5-2p-1f-v3"
    run = read_json(runs[0], "run.json")
    assert run["status"] == "COMPLETED"
    config = read_json(runs[0], "config.json")
    assert config["seed"] == 7 and config["env_args"]["seed"] == 7 and config["runner"] == runner

    metrics = read_json(runs[0], "metrics.json")
    for key in ("return_mean", "return_std", "ep_length_mean", "epsilon", "test_return_mean",
                "loss", "td_error_abs", "q_taken_mean", "target_mean", "grad_norm"):
        assert key in metrics, f"{key} missing from metrics.json: {sorted(metrics)}"
    steps = [t for t, _ in metric(metrics, "return_mean")]
    assert steps == sorted(steps) and steps[-1] > 400
    assert all(0.0 <= v <= 1.0 for _, v in metric(metrics, "test_return_mean"))   # LBF's normalised team return
    assert all(1 <= v <= 50 for _, v in metric(metrics, "ep_length_mean"))
    epsilons = [v for _, v in metric(metrics, "epsilon")]
    assert epsilons[0] > epsilons[-1]                                             # annealing reached the runs

    cout = open(os.path.join(runs[0], "cout.txt")).read()
    assert "Progress: " in cout and "steps/s" in cout and "t_env" in cout          # progress lines


def test_progress_and_results_paths_do_not_depend_on_cwd(tmp_path):
    """A relative local_results_path resolves from the repository root, not the cwd."""
    import helpers

    relative = os.path.relpath(tmp_path / "out", helpers.REPO_ROOT)
    result = run_main("qmix", "lbf", tmp_path, [*TINY, LBF_KEY, "t_max=100"] + [f"local_results_path={relative}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(sacred_runs(tmp_path / "out", "qmix")) == 1
    assert not os.path.exists(tmp_path / relative)


def test_tensorboard_logs_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_main("qmix", "lbf", tmp_path, [*TINY, LBF_KEY, "use_tensorboard=True"])
    assert result.returncode == 0, result.stderr[-3000:]
    (token_dir,) = (tmp_path / "tb_logs").iterdir()
    events = EventAccumulator(str(token_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"return_mean", "test_return_mean", "loss"} <= set(tags)
    assert len(events.Scalars("return_mean")) >= 2


def test_use_cuda_without_a_gpu_falls_back_to_cpu_with_a_warning(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test is about machines without one")
    result = run_main("qmix", "lbf", tmp_path, [*TINY, LBF_KEY, "t_max=100", "use_cuda=True"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "use_cuda=True but no CUDA device is available; running on the CPU" in result.stderr
