"""The GPU path (`use_cuda=True`), end to end. Skipped where torch sees no CUDA device (CI and the
development machines have none); on a machine with one: `python -m pytest tests/test_cuda.py`."""
import os
import sys
from types import SimpleNamespace

import pytest
import torch

from helpers import REPO_ROOT, TINY, metric, models_dir, read_json, run_main, sacred_runs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

LBF = ["env_args.key=lbforaging:Foraging-5x5-2p-1f-v3"]
SALE_MB_SHORT = ["wm_warmup=2", "sale_refresh_interval=5", "target_update_interval_or_tau=7",
                 "model_update_interval=1"]  # the model and imagined TD within the short budget


# Metrics each algorithm logs from its updates (the first one dates the last update).
UPDATE_METRICS = {"qmix": ["loss", "q_taken_mean"],
                  "sale_mb": ["loss", "q_taken_mean", "wm_loss", "imagined_td_loss", "agent_sale_loss"],
                  "mappo": ["critic_loss", "pg_loss", "entropy"]}


@pytest.mark.parametrize("alg, act_on_cpu", [("qmix", True), ("sale_mb", True), ("sale_mb", False),
                                             ("mappo", True)])
def test_a_run_on_the_gpu_resumes_on_the_cpu(tmp_path, alg, act_on_cpu):
    """A run trains on the GPU (its checkpoint's tensors are CUDA tensors), acting on the CPU or
    on the GPU, and resuming it with use_cuda=False continues on the CPU to a larger budget."""
    overrides = [*TINY, *LBF, "t_max=500", "save_model=True", "save_model_interval=250", f"act_on_cpu={act_on_cpu}"]
    if alg == "sale_mb":
        overrides += SALE_MB_SHORT
    if alg == "mappo":
        overrides += ["batch_size=2", "buffer_size=2", "minibatches=2"]
    result = run_main(alg, "lbf", tmp_path, [*overrides, "use_cuda=True"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running on the CPU" not in result.stderr
    token = models_dir(tmp_path)
    last = os.path.join(token, max(os.listdir(token), key=int))
    saved = torch.load(os.path.join(last, "agent.th"), weights_only=False)
    assert all(tensor.is_cuda for tensor in saved.values())
    gpu_metrics = read_json(sacred_runs(tmp_path, alg)[0], "metrics.json")
    keys = UPDATE_METRICS[alg]
    for key in keys:
        values = [v for _, v in metric(gpu_metrics, key)]
        assert values and all(v == v and abs(v) < 1e6 for v in values), (key, values)

    resumed = run_main(alg, "lbf", tmp_path, [*overrides, "t_max=1000", "use_cuda=False", "resume=True",
                                              f"checkpoint_path={token}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed at t_env=" in resumed.stderr
    cpu_metrics = read_json(sacred_runs(tmp_path, alg)[-1], "metrics.json")
    assert max(t for t, _ in metric(cpu_metrics, keys[0])) > max(t for t, _ in metric(gpu_metrics, keys[0]))
    assert read_json(sacred_runs(tmp_path, alg)[-1], "config.json")["use_cuda"] is False


@pytest.mark.parametrize("alg", ["qmix_gru", "sale_mb_no_wm"])
def test_an_update_on_the_gpu_computes_the_cpu_gradients(alg):
    """One learner update of a fresh learner on the same batch: the GPU's gradients are the CPU's
    up to float32 rounding, accumulated over 50-step recurrences (on an H200 at most 2.4e-5 of
    the largest gradient; a missing or misplaced term is of the order of the gradient itself),
    and after the update every parameter lives on the GPU. (sale_mb's
    own update draws random numbers, which differ between devices; its GPU run is the test above.)"""
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    from update_cost import learner_and_batch

    grads = {}
    for device in ("cpu", "cuda"):
        learner, batch = learner_and_batch(alg, "Foraging-5x5-2p-1f-v3", 4, seed=3, device=device)
        learner.train(batch, 0, 0)
        parameters = list(learner.mac.agent.parameters()) + list(learner.mixer.parameters())
        assert all(p.device.type == device for p in parameters)
        grads[device] = [p.grad.detach().cpu() for p in parameters if p.grad is not None]
    assert len(grads["cpu"]) == len(grads["cuda"]) > 0
    scale = max(g.abs().max().item() for g in grads["cpu"])
    assert scale > 0
    for cpu, gpu in zip(grads["cpu"], grads["cuda"]):
        torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("alg", ["sale_mb sale_refresh_interval=2", "qmix_gru"])
def test_the_cpu_acting_copy_follows_the_gpu_learner(alg):
    """With act_on_cpu the runner's MAC stays on the CPU while the learner's moves to the GPU, and
    after each update ``sync_acting`` makes its Q-values the learner's (float rounding apart)."""
    import copy

    import run
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    from update_cost import learner_and_batch

    learner, batch = learner_and_batch(alg, "Foraging-5x5-2p-1f-v3", 4, seed=3)
    learner.args.use_cuda = True
    acting = run.acting_mac(learner.args, learner.mac)
    learner.args.device = "cuda"
    learner.cuda()
    gpu_batch = copy.deepcopy(batch).to("cuda")
    runner = SimpleNamespace(mac=acting)
    for update in range(4):
        learner.train(gpu_batch, 100 * update, update)
        run.sync_acting(runner, learner)
        assert all(p.device.type == "cpu" for p in acting.parameters())
        with torch.no_grad():
            on_cpu, on_gpu = acting.forward_all(batch), learner.mac.forward_all(gpu_batch).cpu()
        torch.testing.assert_close(on_cpu, on_gpu, rtol=1e-4, atol=1e-4 * on_cpu.abs().max().item())
