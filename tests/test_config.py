"""Config merge and start-up validation: every mistake stops the run with a named fix."""
import os
import subprocess
import sys

import pytest

from run_config import ConfigError, build_config, parse_command_line, parse_value

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGS = ["iql", "iql_ns", "vdn", "vdn_ns", "qmix", "qmix_ns"]


def config_error(alg="qmix", env="lbf", overrides=()):
    with pytest.raises(ConfigError) as info:
        build_config(alg, env, list(overrides))
    return str(info.value)


def test_merge_order_default_env_alg_command_line():
    config = build_config("qmix", "lbf", [("t_max", 1234), ("env_args.time_limit", 20)])
    assert config["runner_log_interval"] == 10000          # env file beats default (2000)
    assert config["buffer_size"] == 5000                   # alg file beats default (32)
    assert config["mixer"] == "qmix" and config["use_rnn"] is False
    assert config["t_max"] == 1234                         # command line beats all
    assert config["env_args"]["time_limit"] == 20          # nested key merged, siblings kept
    assert config["env_args"]["key"] == "lbforaging:Foraging-8x8-2p-2f-coop-v3"
    assert config["env_args"]["seed"] == config["seed"]


@pytest.mark.parametrize("alg", ALGS)
def test_every_alg_config_validates_with_its_epymarl_defaults(alg):
    config = build_config(alg, "lbf", [("seed", 3)])
    assert config["name"] == alg and config["seed"] == 3
    assert config["learner"] == "q_learner" and config["epsilon_finish"] == 0.05
    expected = {"iql": (None, True, 128, 3e-4, 200000), "vdn": ("vdn", False, 64, 5e-4, 50000),
                "qmix": ("qmix", False, 64, 5e-4, 50000)}[alg.replace("_ns", "")]
    got = (config["mixer"], config["use_rnn"], config["hidden_dim"], config["lr"], config["epsilon_anneal_time"])
    assert got == expected
    assert config["mac"] == ("non_shared_mac" if alg.endswith("_ns") else "basic_mac")


def test_typo_in_override_is_refused_with_suggestion():
    message = config_error(overrides=[("lr_rate", 0.1)])
    assert "lr_rate" in message and "'lr'" in message
    message = config_error(overrides=[("epsilon_anneal_tim", 10)])
    assert "'epsilon_anneal_time'" in message


def test_typo_in_nested_override_is_refused():
    message = config_error(overrides=[("env_args.time_limt", 10)])
    assert "env_args.time_limt" in message and "'env_args.time_limit'" in message


def test_open_dict_accepts_any_key():
    config = build_config("qmix", "lbf", [("env_args.kwargs.max_num_food", 5)])
    assert config["env_args"]["kwargs"] == {"max_num_food": 5}


def test_wrong_types_are_refused_and_numbers_coerced():
    assert "lr='abc'" in config_error(overrides=[("lr", "abc")])
    assert "use_rnn" in config_error(overrides=[("use_rnn", "yes")])
    assert "t_max" in config_error(overrides=[("t_max", 1.5)])
    config = build_config("qmix", "lbf", [("t_max", 2e6), ("lr", 1), ("mixer", "vdn")])
    assert config["t_max"] == 2000000 and isinstance(config["t_max"], int)
    assert config["lr"] == 1.0 and isinstance(config["lr"], float)
    assert build_config("qmix", "lbf", [("mixer", None)])["mixer"] is None
    assert "lr cannot be null" in config_error(overrides=[("lr", None)])
    config = build_config("qmix", "mamujoco", [("env_args.action_bins", None)])   # continuous actions
    assert config["env_args"]["action_bins"] is None


def test_unknown_registry_names_are_refused_with_suggestion():
    message = config_error(overrides=[("mixer", "qmixx")])
    assert "mixer='qmixx'" in message and "'qmix'" in message
    assert "'episode'" in config_error(overrides=[("runner", "episdoe")])
    assert "'gymma'" in config_error(overrides=[("env", "gyma")])


def test_missing_yaml_files_name_close_choices():
    message = config_error(alg="qmxi")
    assert "--config=qmxi" in message and "'qmix'" in message
    message = config_error(env="lbff")
    assert "--env-config=lbff" in message and "'lbf'" in message
    assert "No --config given" in config_error(alg=None)


def test_typo_inside_a_yaml_file_is_refused(tmp_path, monkeypatch):
    import run_config as config_module

    fake = tmp_path / "config"
    (fake / "algs").mkdir(parents=True)
    (fake / "envs").mkdir()
    for name in ("default.yaml", "envs/lbf.yaml"):
        (fake / name).write_text(open(os.path.join(config_module.CONFIG_DIR, name)).read())
    (fake / "algs/typo.yaml").write_text('name: "typo"\nepsilon_anneal_tme: 100\n')
    (fake / "algs/newkey.yaml").write_text('name: "newkey"\nrollout_depth: 3\n')
    monkeypatch.setattr(config_module, "CONFIG_DIR", str(fake))
    message = config_error(alg="typo")
    assert "algs/typo.yaml" in message and "'epsilon_anneal_time'" in message
    assert build_config("newkey", "lbf", [])["rollout_depth"] == 3   # distinct new keys are fine


def test_consistency_rules():
    assert "checkpoint_path" in config_error(overrides=[("evaluate", True)])
    assert "checkpoint_path" in config_error(overrides=[("resume", True)])
    assert "runner=parallel" in config_error(overrides=[("batch_size_run", 4)])
    assert "buffer_size" in config_error(overrides=[("batch_size", 64), ("buffer_size", 32)])


def test_command_line_parsing():
    alg, env, overrides = parse_command_line(
        ["--config=qmix", "--env-config=lbf", "with", "env_args.key=lbforaging:Foraging-8x8-2p-3f-v3",
         "lr=1e-3", "use_cuda=false", "mixer=null", "env_args.kwargs={'max_num_food': 5}"])
    assert (alg, env) == ("qmix", "lbf")
    assert overrides == [("env_args.key", "lbforaging:Foraging-8x8-2p-3f-v3"), ("lr", 1e-3),
                         ("use_cuda", False), ("mixer", None), ("env_args.kwargs", {"max_num_food": 5})]
    assert parse_value("[1, 2]") == [1, 2] and parse_value("qmix") == "qmix"
    with pytest.raises(ConfigError, match="key=value"):
        parse_command_line(["--config=qmix", "--env-config=lbf", "with", "lr"])
    with pytest.raises(ConfigError, match="Unknown argument"):
        parse_command_line(["--config=qmix", "--env-cfg=lbf"])


def test_entry_point_refuses_bad_config_before_starting_anything(tmp_path):
    """The real entry point exits with code 2, a clear message, and no results written."""
    cmd = [sys.executable, os.path.join(REPO_ROOT, "src", "main.py"), "--config=qmix", "--env-config=lbf",
           "with", "mixer=qmixx"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "mixer='qmixx' is not registered" in result.stderr and "'qmix'" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key,expected", [
    ("lbforaging:Foraging-8x8-2p-3f-v9", "'Foraging-8x8-2p-3f-v3'"),
    ("lbforagin:Foraging-8x8-2p-3f-v3", "needs the Python package 'lbforagin'"),
])
def test_entry_point_refuses_an_unknown_gym_env_before_starting(tmp_path, key, expected):
    cmd = [sys.executable, os.path.join(REPO_ROOT, "src", "main.py"), "--config=qmix", "--env-config=gymma",
           "with", f"env_args.key={key}", f"local_results_path={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


# --- alg files that extend another ----------------------------------------------------------------
@pytest.mark.parametrize("ablation, changed", [
    ("sale_mb_no_wm", {"world_model"}),
    ("sale_mb_no_sale", {"agent", "use_sale", "mixer_inputs"}),
    ("sale_mb_no_klbal", {"kl_balance"}),
    ("sale_mb_no_state", {"use_state_decoder", "mixer_inputs"}),
])
def test_an_ablation_is_its_parent_with_only_the_keys_it_names_changed(ablation, changed):
    parent = build_config("sale_mb", "lbf", [("seed", 1)])
    child = build_config(ablation, "lbf", [("seed", 1)])
    differing = {key for key in parent if parent[key] != child[key]}
    assert differing == changed | {"name"}
    assert "extends" not in child


def test_an_alg_file_that_extends_itself_is_refused(tmp_path, monkeypatch):
    import run_config as config_module
    algs = tmp_path / "algs"
    algs.mkdir()
    (algs / "loop.yaml").write_text('extends: "loop"\nname: "loop"\n')
    monkeypatch.setattr(config_module, "CONFIG_DIR", str(tmp_path))
    with pytest.raises(config_module.ConfigError, match="extends itself"):
        config_module.load_named_config("algs", "loop")


# --- GRU-QMIX: QMIX with SALE-MB's agent network, inputs and budget -------------------------------
GRU_QMIX_SHARED = ["use_rnn", "obs_last_action", "obs_agent_id", "obs_individual_obs", "hidden_dim",
                   "lr", "batch_size", "buffer_size", "standardise_rewards", "double_q",
                   "target_update_interval_or_tau", "epsilon_start", "epsilon_finish",
                   "epsilon_anneal_time", "mixing_embed_dim", "hypernet_layers", "hypernet_embed"]


def test_qmix_gru_shares_sale_mbs_agent_network_inputs_and_budget():
    """The GRU-QMIX baseline differs from SALE-MB only in what SALE-MB adds, and from default
    QMIX only in the agent network and inputs."""
    gru_qmix = build_config("qmix_gru", "lbf", [("seed", 1)])
    sale_mb = build_config("sale_mb", "lbf", [("seed", 1)])
    assert {key: gru_qmix[key] for key in GRU_QMIX_SHARED} == {key: sale_mb[key] for key in GRU_QMIX_SHARED}
    assert gru_qmix["use_rnn"] and gru_qmix["obs_last_action"]
    qmix = build_config("qmix", "lbf", [("seed", 1)])
    differing = {key for key in qmix if qmix[key] != gru_qmix[key]}
    assert differing == {"use_rnn", "obs_last_action", "name"}
