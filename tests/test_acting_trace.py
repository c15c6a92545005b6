"""The traced acting path (``trace_acting``, src/controllers/basic_controller.py) on real
Level-Based Foraging: acting through the agent's ``torch.jit.trace`` gives the eager actions bit
for bit, also after the parameters change, and a whole training run is the same with it as
without it."""
import copy
import glob
import os
from types import SimpleNamespace

import pytest
import torch

from controllers import REGISTRY as mac_REGISTRY
from helpers import TINY, metric, models_dir, read_json, run_main, sacred_runs
from learners import REGISTRY as learner_REGISTRY
from run import _seed_everything, apply_env_info, build_scheme
from run_config import build_config, parse_overrides
from runners import REGISTRY as runner_REGISTRY


class NullLogger:
    def log_stat(self, key, value, t):
        pass


def lbf_parts(alg, trace, seed=3):
    """Runner (real LBF, 8x8 2 players), MAC and learner built as src/run.py builds them."""
    _seed_everything(seed)
    args = SimpleNamespace(**build_config(alg, "lbf", parse_overrides([f"trace_acting={trace}", f"seed={seed}"])),
                           device="cpu")
    args.env_args["seed"] = seed
    runner = runner_REGISTRY["episode"](args=args, logger=NullLogger())
    apply_env_info(args, runner.get_env_info())
    scheme, groups, preprocess = build_scheme(runner.get_env_info(), args)
    mac = mac_REGISTRY[args.mac](scheme, groups, args)
    mac_scheme = {**scheme, "actions_onehot": {"vshape": (args.n_actions,), "group": "agents"}}
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    learner = learner_REGISTRY[args.learner](mac, mac_scheme, NullLogger(), args)
    return runner, mac, learner


def nudge(parameters, seed):
    """An optimiser-like in-place change of every parameter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in parameters:
            param.add_(0.05 * torch.randn(param.shape, generator=generator))


def record_q_values(mac):
    """The agent outputs every acting call hands to the (real) action selector."""
    seen, select = [], mac.action_selector.select_action

    def recording(agent_outputs, *args, **kwargs):
        seen.append(agent_outputs.clone())
        return select(agent_outputs, *args, **kwargs)
    mac.action_selector.select_action = recording
    return seen


@pytest.mark.parametrize("alg", ["sale_mb", "qmix_gru", "qmix"])
def test_traced_acting_takes_the_eager_actions_through_parameter_changes(alg):
    batches, q_values = {}, {}
    for trace in (True, False):
        runner, mac, learner = lbf_parts(alg, trace)
        q_values[trace], runs = record_q_values(mac), []
        for episode in range(4):  # greedy (test) episodes read every Q value
            runs.append(runner.run(test_mode=episode % 2 == 1))
            nudge(mac.parameters(), seed=episode)
            if hasattr(mac.agent, "refresh_fixed_encoders"):
                mac.agent.refresh_fixed_encoders()  # SALE's fixed encoders change in place too
        batches[trace] = runs
        if trace:
            traces = list(mac._traces.values())
            # the first step's hidden state has another shape: two traces, both used
            assert len(traces) == 2 and all(isinstance(t, torch.jit.ScriptModule) for t in traces)
            # a copy (the learner's target network) and a device move leave the traces behind
            assert learner.target_mac._traces == {} and copy.deepcopy(mac)._traces == {}
            assert mac.to("cpu")._traces == {}
        else:
            assert mac._traces == {}
        runner.close_env()
    for traced, eager in zip(batches[True], batches[False]):
        for field in ("actions", "obs", "reward"):
            assert torch.equal(traced[field], eager[field]), field
    assert torch.equal(torch.cat(q_values[True]), torch.cat(q_values[False]))


def test_a_target_sale_agent_is_not_traced():
    runner, mac, learner = lbf_parts("sale_mb", True)
    assert mac.agent.traceable and not learner.target_mac.agent.traceable
    batch = runner.run()
    learner.target_mac.init_hidden(1)
    with torch.no_grad():
        learner.target_mac.forward(batch, 0, acting=True)
    assert learner.target_mac._traces == {}  # it reads the fixed target encoder: eager
    runner.close_env()


def test_training_is_the_same_with_and_without_the_traced_acting_path(tmp_path):
    finals = {}
    for trace in (True, False):
        results = tmp_path / str(trace)
        results.mkdir()
        done = run_main("sale_mb", "lbf", results, [*TINY, "wm_warmup=2", f"trace_acting={trace}"])
        assert done.returncode == 0, done.stderr[-3000:]
        [run] = sacred_runs(results, "sale_mb")
        [final] = sorted(glob.glob(os.path.join(models_dir(results), "*")), key=lambda p: int(os.path.basename(p)))[-1:]
        finals[trace] = (torch.load(os.path.join(final, "agent.th")),
                         metric(read_json(run, "metrics.json"), "test_return_mean"))
    (agent_on, returns_on), (agent_off, returns_off) = finals[True], finals[False]
    assert returns_on == returns_off and len(returns_on) >= 3
    assert agent_on.keys() == agent_off.keys()
    assert all(torch.equal(agent_on[name], agent_off[name]) for name in agent_on)


@pytest.mark.parametrize("alg", ["sale_mb sale_refresh_interval=2", "qmix_gru"])
def test_an_acting_copy_gives_the_learners_q_values_after_every_sync(alg):
    """With use_cuda and act_on_cpu the runner acts through a CPU copy of the learner's MAC
    (src/run.py ``acting_mac``); ``sync_acting`` after each update makes its Q-values the learner's
    bit for bit, SALE encoder refreshes included. Both on the CPU here; tests/test_cuda.py moves
    the learner to a GPU."""
    import sys

    import run
    from helpers import REPO_ROOT
    sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
    from update_cost import learner_and_batch

    learner, batch = learner_and_batch(alg, "Foraging-5x5-2p-1f-v3", 4, seed=3)
    learner.args.use_cuda = False
    assert run.acting_mac(learner.args, learner.mac) is learner.mac
    learner.args.use_cuda = True
    acting = run.acting_mac(learner.args, learner.mac)
    assert acting is not learner.mac
    runner = SimpleNamespace(mac=acting)

    def same_q_values():
        with torch.no_grad():
            return torch.equal(acting.forward_all(batch), learner.mac.forward_all(batch))

    for update in range(4):
        learner.train(batch, 100 * update, update)
        assert not same_q_values()
        run.sync_acting(runner, learner)
        assert same_q_values(), update
