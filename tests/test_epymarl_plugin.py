"""SALE-MB as a plugin of upstream EPyMARL: the installer, and upstream's own entry point running
the installed method (train with checkpoints, then evaluate from one) next to upstream QMIX.

Upstream EPyMARL lives beside the repository in ``../shared/epymarl`` (unmodified; see its
UPSTREAM.md); the tests copy it to a temporary folder and install there. Its
``src/envs/__init__.py`` imports ``smaclite`` unconditionally, a package on no registry reachable
here, although an LBF run never uses it: the runs put an empty stand-in ``smaclite`` package on
PYTHONPATH (a stand-in only for that import; every other part is the real thing).
"""
import ast
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO_ROOT, UPSTREAM_EPYMARL as UPSTREAM

sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
import install_epymarl_plugin as installer  # noqa: E402

INSTALLER = os.path.join(REPO_ROOT, "tools", "install_epymarl_plugin.py")
LBF = ["env_args.key=lbforaging:Foraging-8x8-2p-2f-coop-v3", "env_args.time_limit=25"]
SHORT = ["use_cuda=False", "test_nepisode=4", "test_interval=1000", "log_interval=1000",
         "runner_log_interval=1000", "batch_size=8", "seed=3"]

pytestmark = pytest.mark.skipif(not os.path.isdir(UPSTREAM),
                                reason=f"upstream EPyMARL is not at {UPSTREAM} (only CI and the "
                                       "development machine lay shared/ out beside the repository)")


def copy_upstream(folder):
    shutil.copytree(UPSTREAM, folder)
    for root, dirs, files in os.walk(folder):  # CI lays shared/ out read-only; copies keep modes
        for name in dirs + files:
            path = os.path.join(root, name)
            os.chmod(path, os.stat(path).st_mode | 0o200)
    os.chmod(folder, os.stat(folder).st_mode | 0o200)
    return str(folder)


def tree_digest(folder):
    digests = {}
    for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def epymarl(tmp_path_factory):
    """A writable copy of upstream EPyMARL with the plugin installed, and a stand-in smaclite."""
    root = copy_upstream(tmp_path_factory.mktemp("upstream") / "epymarl")
    done = subprocess.run([sys.executable, INSTALLER, root], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stand_in = tmp_path_factory.mktemp("standin")
    (stand_in / "smaclite").mkdir()
    (stand_in / "smaclite" / "__init__.py").write_text('"""Stand-in: upstream imports it; LBF never uses it."""\n')
    return root, str(stand_in)


def run_upstream(epymarl, alg, overrides):
    root, stand_in = epymarl
    env = dict(os.environ, PYTHONPATH=stand_in)
    done = subprocess.run([sys.executable, "src/main.py", f"--config={alg}", "--env-config=gymma",
                           "with", *LBF, *SHORT, *overrides],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = sorted(glob.glob(os.path.join(root, "results", "sacred", alg, "*", "*", "metrics.json")),
                  key=os.path.getmtime)
    with open(runs[-1]) as f:
        metrics = json.load(f)
    with open(os.path.join(os.path.dirname(runs[-1]), "run.json")) as f:
        assert json.load(f)["status"] == "COMPLETED"
    return metrics


def test_sale_mb_trains_saves_and_evaluates_inside_upstream_epymarl(epymarl):
    root, _ = epymarl
    trained = run_upstream(epymarl, "sale_mb", ["t_max=2000", "save_model=True",
                                                "save_model_interval=1000", "learner_log_interval=500",
                                                "wm_warmup=2", "buffer_size=100"])
    for key in ("test_return_mean", "td_loss", "imagined_td_loss", "wm_loss", "wm_kl_loss",
                "wm_recon_loss", "wm_reward_loss", "joint_sale_loss", "agent_sale_loss",
                "wm_grad_norm"):
        assert key in trained and trained[key]["values"], key
    (models,) = glob.glob(os.path.join(root, "results", "models", "*"))
    saved_steps = sorted(int(step) for step in os.listdir(models))
    assert len(saved_steps) >= 2
    assert {"agent.th", "target_agent.th", "mixer.th", "world_model.th", "wm_opt.th",
            "learner_state.th"} <= set(os.listdir(os.path.join(models, str(saved_steps[-1]))))

    evaluated = run_upstream(epymarl, "sale_mb", ["evaluate=True", f"checkpoint_path={models}"])
    assert evaluated["test_return_mean"]["values"]
    assert evaluated["episode"]["steps"] == [saved_steps[-1]]  # it loaded the latest checkpoint
    assert "td_loss" not in evaluated  # evaluation only: no update ran


def test_upstream_qmix_runs_in_the_same_checkout(epymarl):
    """A broken checkout is told apart from a broken plugin: upstream's own QMIX runs there."""
    metrics = run_upstream(epymarl, "qmix", ["t_max=1000", "learner_log_interval=500"])
    assert metrics["test_return_mean"]["values"] and metrics["loss"]["values"]


def test_installer_changes_only_registry_lines_and_is_idempotent(tmp_path):
    root = copy_upstream(tmp_path / "epymarl")
    before = tree_digest(root)
    changed = installer.install(root)
    after = tree_digest(root)
    assert {path for path in before if before[path] != after[path]} == {
        os.path.join("src", rel) for rel in installer.REGISTRY_LINES}
    for rel, lines in installer.REGISTRY_LINES.items():
        with open(os.path.join(UPSTREAM, "src", rel)) as f:
            original = f.read()
        with open(os.path.join(root, "src", rel)) as f:
            assert f.read() == original.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    assert {f"src/{rel}" for rel in installer.PLUGIN_FILES} <= set(changed)
    assert installer.install(root) == []
    assert tree_digest(root) == after


def test_installer_refuses_a_folder_that_is_not_epymarl(tmp_path):
    (tmp_path / "src").mkdir()
    done = subprocess.run([sys.executable, INSTALLER, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "is not an EPyMARL checkout" in done.stderr and "src/main.py" in done.stderr
    assert os.listdir(tmp_path) == ["src"] and not os.listdir(tmp_path / "src")


def test_installer_refuses_to_overwrite_a_file_it_did_not_install(tmp_path):
    root = copy_upstream(tmp_path / "epymarl")
    clash = os.path.join(root, "src", "utils", "td_utils.py")
    with open(clash, "w") as f:
        f.write("# the user's own file\n")
    done = subprocess.run([sys.executable, INSTALLER, root], capture_output=True, text=True)
    assert done.returncode == 2 and "td_utils.py exists" in done.stderr
    with open(clash) as f:
        assert f.read() == "# the user's own file\n"


def test_plugin_files_import_only_torch_numpy_each_other_and_epymarl():
    """Self-contained: besides the standard library, torch and numpy, a plugin file imports only
    other plugin files and EPyMARL's EpisodeBatch module."""
    plugin_modules = {rel[:-3].replace("/", ".").removesuffix(".__init__")
                      for rel in installer.PLUGIN_FILES}
    allowed = plugin_modules | {"components.episode_buffer", "torch", "numpy"} | set(sys.stdlib_module_names)
    for rel in installer.PLUGIN_FILES:
        with open(os.path.join(installer.SRC, rel)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module]
            else:
                continue
            for name in names:
                assert name in allowed or name.split(".")[0] in {"torch", "numpy"} | set(
                    sys.stdlib_module_names), f"{rel} imports {name}"


@pytest.mark.parametrize("alg", installer.ALG_CONFIGS)
def test_installed_alg_configs_hold_what_our_framework_runs(tmp_path, alg):
    """EPyMARL reads each installed yaml as it is (no ``extends``); every key it sets has the
    value our framework's merged config gives that algorithm."""
    import yaml
    from run_config import build_config

    text = installer.alg_config_text(alg)
    installed = yaml.load(text, Loader=yaml.FullLoader)  # EPyMARL's loader
    assert "extends" not in installed and installed["name"] == alg
    ours = build_config(alg, "lbf", [])
    assert {key: ours[key] for key in installed} == installed
