"""Actor-critic methods end to end through the real entry point (tiny budgets, both runners) on
LBF, SMAX and MaMuJoCo with continuous actions; their config checks; value-based methods refused
on continuous actions before anything starts."""
import math
import os

import pytest

from helpers import TINY, metric, read_json, run_main, sacred_runs
from run_config import ConfigError, build_config

LBF_KEY = "env_args.key=lbforaging:Foraging-5x5-2p-1f-v3"
POLICY_METRICS = ("pg_loss", "critic_loss", "entropy", "advantage_mean", "agent_grad_norm",
                  "critic_grad_norm", "td_error_abs", "q_taken_mean", "target_mean")
PPO_METRICS = ("clip_fraction", "approx_kl")


def on_policy(runner):
    """Two episodes per update, the ones just collected."""
    sizes = ["batch_size=2", "buffer_size=2", f"runner={runner}"]
    return sizes + (["batch_size_run=2"] if runner == "parallel" else ["batch_size_run=1"])


def trained_metrics(tmp_path, alg, env, overrides):
    result = run_main(alg, env, tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = sacred_runs(tmp_path, alg)
    assert read_json(run, "run.json")["status"] == "COMPLETED"
    metrics = read_json(run, "metrics.json")
    expected = POLICY_METRICS + (PPO_METRICS if "ppo" in alg else ()) + ("return_mean", "test_return_mean")
    for key in expected:
        assert key in metrics, f"{key} missing from metrics.json: {sorted(metrics)}"
    assert metric(metrics, "return_mean")[-1][0] >= 400
    return run, metrics


@pytest.mark.parametrize("alg, runner", [("mappo", "parallel"), ("ippo_ns", "episode"),
                                         ("maa2c", "episode"), ("coma", "parallel")])
def test_trains_and_evaluates_on_lbf(tmp_path, alg, runner):
    overrides = [*TINY, LBF_KEY, *on_policy(runner), "save_model=True", "save_model_interval=300"]
    run, metrics = trained_metrics(tmp_path, alg, "lbf", overrides)
    assert all(0.0 <= v <= 1.0 for _, v in metric(metrics, "test_return_mean"))
    assert all(0.0 <= v <= math.log(6) + 1e-4 for _, v in metric(metrics, "entropy"))  # 6 LBF actions
    if "ppo" in alg:
        assert all(0.0 <= v <= 1.0 for _, v in metric(metrics, "clip_fraction"))
    models = os.path.join(tmp_path, "models")
    (token,) = os.listdir(models)
    files = set(os.listdir(os.path.join(models, token, max(os.listdir(os.path.join(models, token)), key=int))))
    assert {"agent.th", "critic.th", "target_critic.th", "agent_opt.th", "critic_opt.th"} <= files

    evaluated = run_main(alg, "lbf", tmp_path, [*overrides, "evaluate=True",
                                                f"checkpoint_path={os.path.join(models, token)}"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test_return_mean" in evaluated.stderr and "Beginning training" not in evaluated.stderr


@pytest.mark.parametrize("alg, runner", [("mappo", "episode"), ("ia2c", "parallel")])
def test_trains_on_smax(tmp_path, alg, runner):
    # max_steps as in the conformance test's smax case, so the compiled code is already cached.
    run, metrics = trained_metrics(tmp_path, alg, "smax",
                                   [*TINY, "env_args.max_steps=25", *on_policy(runner)])
    assert "battle_won_mean" in metrics and "test_battle_won_mean" in metrics


@pytest.mark.parametrize("alg, runner", [("mappo", "parallel"), ("ippo", "episode")])
def test_trains_on_mamujoco_with_continuous_actions(tmp_path, alg, runner):
    pytest.importorskip("gymnasium_robotics")
    overrides = [*TINY, "env_args.action_bins=null", "env_args.time_limit=50", *on_policy(runner)]
    run, metrics = trained_metrics(tmp_path, alg, "mamujoco", overrides)
    assert os.path.basename(os.path.dirname(run)) == "HalfCheetah_6x1"
    # a Gaussian over one joint per agent starting at std 1: entropy 0.5 (1 + log 2 pi) per agent
    assert metric(metrics, "entropy")[0][1] == pytest.approx(0.5 * (1 + math.log(2 * math.pi)), abs=0.01)
    assert all(length == 50 for _, length in metric(metrics, "ep_length_mean"))
    assert "x_position_mean" in metrics


@pytest.mark.parametrize("alg", ["qmix", "iql", "coma"])
def test_methods_needing_discrete_actions_are_refused_on_continuous_ones(tmp_path, alg):
    result = run_main(alg, "mamujoco", tmp_path, ["env_args.action_bins=null"])
    assert result.returncode == 2
    assert "needs discrete actions" in result.stderr and "action_bins" in result.stderr
    assert not os.path.exists(os.path.join(tmp_path, "sacred"))


# EPyMARL's values (its src/config/algs/*.yaml): learner, critic, lr, hidden, GRU, entropy, n-step,
# epochs (A2C: 1 in our single learner), target update, agent id input.
EPYMARL_DEFAULTS = {
    "ia2c": ("actor_critic_learner", "ac_critic", 5e-4, 128, True, 0.001, 5, 1, 0.01, True),
    "ippo": ("ppo_learner", "ac_critic", 3e-4, 128, True, 0.001, 5, 4, 0.01, True),
    "maa2c": ("actor_critic_learner", "cv_critic", 5e-4, 128, True, 0.01, 5, 1, 0.01, True),
    "mappo": ("ppo_learner", "cv_critic", 3e-4, 128, True, 0.001, 5, 4, 0.01, True),
    "coma": ("coma_learner", "coma_critic", 3e-4, 64, True, 0.001, 10, 4, 200, True),
    "ia2c_ns": ("actor_critic_learner", "ac_critic_ns", 5e-4, 64, False, 0.001, 5, 1, 200, False),
    "ippo_ns": ("ppo_learner", "ac_critic_ns", 3e-4, 64, False, 0.01, 5, 4, 200, False),
    "maa2c_ns": ("actor_critic_learner", "cv_critic_ns", 3e-4, 64, False, 0.01, 5, 1, 200, False),
    "mappo_ns": ("ppo_learner", "cv_critic_ns", 3e-4, 64, False, 0.01, 5, 4, 200, False),
    "coma_ns": ("coma_learner", "coma_critic_ns", 5e-4, 64, False, 0.01, 5, 4, 200, True),
}


@pytest.mark.parametrize("alg", sorted(EPYMARL_DEFAULTS))
def test_configs_carry_epymarl_defaults(alg):
    config = build_config(alg, "lbf", [])
    keys = ("learner", "critic_type", "lr", "hidden_dim", "use_rnn", "entropy_coef", "q_nstep", "epochs",
            "target_update_interval_or_tau", "obs_agent_id")
    assert tuple(config[key] for key in keys) == EPYMARL_DEFAULTS[alg]
    assert (config["runner"], config["batch_size_run"], config["batch_size"], config["buffer_size"]) == ("parallel", 10, 10, 10)
    assert config["t_max"] == 20050000 and config["standardise_rewards"] and not config["obs_last_action"]
    assert config["action_selector"] == "soft_policies" and config["agent_output_type"] == "pi_logits"
    assert config["mac"] == ("non_shared_mac" if alg.endswith("_ns") else "basic_mac")
    assert (config["gae_lambda"], config["normalise_advantages"], config["minibatches"], config["value_loss_clip"]) == (
        None, False, 1, None)


@pytest.mark.parametrize("overrides, message", [
    ([("buffer_size", 20)], "buffer_size equal to batch_size"),
    ([("critic_type", "cv_critc")], "critic_type='cv_critc' is not registered"),
    ([("gae_lambda", "high")], "gae_lambda must be null .* or a number, got 'high'"),
    ([("value_loss_clip", [0.2])], r"value_loss_clip must be null .* or a number, got \[0.2\]"),
    ([("minibatches", 11)], "at most one minibatch per episode"),
])
def test_inconsistent_actor_critic_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config("mappo", "lbf", overrides)


def test_coma_needs_its_counterfactual_critic():
    with pytest.raises(ConfigError, match="counterfactual critic"):
        build_config("coma", "lbf", [("critic_type", "cv_critic")])
    config = build_config("mappo", "lbf", [("gae_lambda", 0.95), ("value_loss_clip", 0.2), ("minibatches", 2)])
    assert (config["gae_lambda"], config["value_loss_clip"], config["minibatches"]) == (0.95, 0.2, 2)


# --- the learner on a one-step bandit ------------------------------------------------------------
class StatsLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats.setdefault(key, []).append(value)


def bandit_batch(batch_size, generator):
    """One-step episodes of 2 agents with 3 actions (action 2 unavailable): the team reward is the
    number of agents that picked action 0, and the episode ends (a real terminal)."""
    import torch

    from components.episode_buffer import EpisodeBatch
    from components.transforms import OneHot

    scheme = {"state": {"vshape": 2}, "obs": {"vshape": 2, "group": "agents"},
              "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
              "avail_actions": {"vshape": (3,), "group": "agents", "dtype": torch.int},
              "reward": {"vshape": (1,)}, "terminated": {"vshape": (1,), "dtype": torch.uint8}}
    batch = EpisodeBatch(scheme, {"agents": 2}, batch_size, 2,
                         preprocess={"actions": ("actions_onehot", [OneHot(3)])})
    actions = torch.randint(2, (batch_size, 2, 2, 1), generator=generator)
    reward = (actions[:, 0] == 0).float().sum(1)
    batch.update({"state": torch.ones(batch_size, 2, 2), "obs": torch.ones(batch_size, 2, 2, 2),
                  "avail_actions": torch.tensor([1, 1, 0]).expand(batch_size, 2, 2, 3),
                  "actions": actions}, ts=slice(None))
    batch.update({"reward": reward, "terminated": torch.ones(batch_size, 1)}, ts=0)
    return batch


def bandit_learner(alg, overrides, scheme, logger):
    """The learner of `alg` (with its MAC) for bandit_batch's episodes."""
    from types import SimpleNamespace

    from controllers import REGISTRY as mac_REGISTRY
    from learners import REGISTRY as learner_REGISTRY

    config = build_config(alg, "matrix_game", [("batch_size", 64), ("buffer_size", 64), ("lr", 0.005),
                                               ("learner_log_interval", 1), ("standardise_rewards", False),
                                               ("hidden_dim", 32)]
                          + list(overrides.items()))
    args = SimpleNamespace(**config, n_agents=2, n_actions=3, state_shape=2, obs_shape=2, episode_limit=1,
                           continuous_actions=False, device="cpu")
    mac = mac_REGISTRY[args.mac](scheme, {"agents": 2}, args)
    return learner_REGISTRY[args.learner](mac, scheme, logger, args)


@pytest.mark.parametrize("alg, overrides", [
    ("mappo", {}),
    ("mappo", {"gae_lambda": 0.95, "normalise_advantages": True, "minibatches": 4}),
    ("ippo", {"value_loss_clip": 0.2, "standardise_returns": True}),
    ("maa2c", {}),
    ("coma", {}),
])
def test_an_update_favours_the_better_action_and_fits_the_critic(alg, overrides):
    """Thirty updates on fresh batches (64 episodes) of uniformly random actions: the policy moves towards the
    rewarded action, never to the unavailable one, and the critic learns the known values."""
    import torch

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    batch = bandit_batch(64, generator)
    logger = StatsLogger()
    learner = bandit_learner(alg, overrides, batch.scheme, logger)
    mac = learner.mac
    before = mac.forward_all(batch)[:, 0].detach()
    for t in range(30):
        learner.train(bandit_batch(64, generator), t_env=t + 1, episode_num=t)
    after = mac.forward_all(batch)[:, 0].detach()
    assert (after[..., 0] > before[..., 0] + 0.2).all()          # action 0 (reward 1) gained
    assert (after[..., 2] == 0).all()                             # the unavailable action stays at 0
    if alg == "coma":   # Q(s, u) is deterministic here: the number of agents on action 0
        assert logger.stats["critic_loss"][-1] < 0.1
    elif overrides.get("standardise_returns"):   # the running return statistics hold E[r] = 1
        assert learner.ret_ms.mean.numpy() == pytest.approx([1.0, 1.0], abs=0.15)
    else:               # V(s) under the random actions of the data: E[r] = 1 (a batch mean has std 0.09)
        assert learner.critic(batch)[:, 0].mean().item() == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("name", ["agent.th", "critic.th", "critic_opt.th", "target_critic.th"])
def test_a_damaged_checkpoint_file_is_named(tmp_path, name):
    """A truncated file stops mappo's load with an error naming that file; a missing required one
    names what is missing."""
    import torch

    scheme = bandit_batch(1, torch.Generator().manual_seed(0)).scheme
    bandit_learner("mappo", {}, scheme, StatsLogger()).save_models(str(tmp_path))
    with open(tmp_path / name, "r+b") as f:
        f.truncate(10)
    with pytest.raises(RuntimeError, match=f"{name} is damaged"):
        bandit_learner("mappo", {}, scheme, StatsLogger()).load_models(str(tmp_path))
    os.remove(tmp_path / name)
    if name != "target_critic.th":  # optional: an EPyMARL checkpoint lacks it
        with pytest.raises(FileNotFoundError, match=f"has no {name}"):
            bandit_learner("mappo", {}, scheme, StatsLogger()).load_models(str(tmp_path))
