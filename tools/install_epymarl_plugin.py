"""Install SALE-MB into an EPyMARL checkout: python tools/install_epymarl_plugin.py /path/to/epymarl

Copies the plugin's files (none of which EPyMARL has), adds one registry entry (an import and a
REGISTRY line) to EPyMARL's agent and learner registries, and writes sale_mb*.yaml into its
config/algs (each ablation with sale_mb.yaml's keys folded in: EPyMARL's config loader has no
``extends``). Running it again changes nothing. Exit code 2, with a message, when the path is not
an EPyMARL checkout or a file there would be overwritten that the plugin did not install.
"""
import argparse
import json
import os
import sys

import yaml

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# the plugin: the method's files and the helpers they need, all relative to src/
PLUGIN_FILES = (
    "modules/agents/sale_agent.py",
    "modules/mixers/monotonic_mixer.py",
    "modules/mixers/qmix_sale.py",
    "modules/world_models/__init__.py",
    "modules/world_models/vae_world_model.py",
    "modules/world_models/rollout_encoder.py",
    "learners/sale_mb_learner.py",
    "learners/sale_model_learner.py",
    "utils/gru_sequence.py",
    "utils/latent_utils.py",
    "utils/running_mean_std.py",
    "utils/td_utils.py",
)
REGISTRY_LINES = {
    "modules/agents/__init__.py": ("from .sale_agent import SALEAgent",
                                   'REGISTRY["sale_agent"] = SALEAgent'),
    "learners/__init__.py": ("from .sale_mb_learner import SALEMBLearner",
                             'REGISTRY["sale_mb_learner"] = SALEMBLearner'),
}
ALG_CONFIGS = ("sale_mb", "sale_mb_no_klbal", "sale_mb_no_sale", "sale_mb_no_state", "sale_mb_no_wm")
# what marks an EPyMARL checkout (relative to its root)
EPYMARL_MARKERS = ("src/main.py", "src/run.py", "src/config/default.yaml", "src/config/algs",
                   "src/components/episode_buffer.py", "src/controllers/basic_controller.py",
                   "src/learners/__init__.py", "src/modules/agents/__init__.py")
MANIFEST = "src/.sale_mb_plugin.json"  # the files this installer wrote, so it may update them


class InstallError(Exception):
    pass


def check_checkout(root):
    missing = [marker for marker in EPYMARL_MARKERS if not os.path.exists(os.path.join(root, marker))]
    if missing:
        raise InstallError(f"{root} is not an EPyMARL checkout (no {', '.join(missing)}); pass the "
                           "folder that holds EPyMARL's src/main.py")


def alg_config_text(name):
    """The yaml EPyMARL reads for an alg: sale_mb.yaml as written; an ablation's own comments,
    then sale_mb.yaml's keys with its changes (no ``extends``)."""
    path = os.path.join(SRC, "config", "algs", f"{name}.yaml")
    with open(path) as f:
        text = f.read()
    config = yaml.safe_load(text)
    if "extends" not in config:
        return text
    parent = yaml.safe_load(alg_config_text(config.pop("extends")))
    comments = [line for line in text.splitlines() if line.startswith("#")]
    header = "\n".join(comments + ["# (installed for EPyMARL: sale_mb.yaml's keys with this "
                                   "ablation's changes folded in)"])
    return header + "\n" + yaml.safe_dump({**parent, **config}, sort_keys=False)


def planned_files():
    """{path relative to the checkout: text} of every file the plugin adds."""
    files = {}
    for rel in PLUGIN_FILES:
        with open(os.path.join(SRC, rel)) as f:
            files[f"src/{rel}"] = f.read()
    for name in ALG_CONFIGS:
        files[f"src/config/algs/{name}.yaml"] = alg_config_text(name)
    return files


def install(root):
    """Install into the checkout at root; returns the paths (relative) it changed."""
    check_checkout(root)
    manifest_path = os.path.join(root, MANIFEST)
    installed = set()
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            installed = set(json.load(f))
    changes = {}
    for rel, text in planned_files().items():
        path = os.path.join(root, rel)
        if os.path.exists(path):
            with open(path) as f:
                current = f.read()
            if current == text:
                continue
            if rel not in installed:
                raise InstallError(f"{path} exists and was not installed by this plugin; move it "
                                   "away first (the plugin would overwrite it)")
        changes[rel] = text
    for rel, lines in REGISTRY_LINES.items():
        path = os.path.join(root, "src", rel)
        with open(path) as f:
            current = f.read()
        missing = [line for line in lines if line not in current.splitlines()]
        if missing:
            changes[f"src/{rel}"] = current.rstrip("\n") + "\n" + "\n".join(missing) + "\n"

    for rel, text in changes.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    wanted = sorted(installed | set(planned_files()))
    if changes or sorted(installed) != wanted:
        with open(manifest_path, "w") as f:
            json.dump(wanted, f, indent=1)
    return sorted(changes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("epymarl", help="the EPyMARL checkout (the folder holding src/main.py)")
    args = parser.parse_args(argv)
    try:
        changed = install(os.path.abspath(args.epymarl))
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if changed:
        print("installed SALE-MB into", args.epymarl, "\n  " + "\n  ".join(changed))
    else:
        print("SALE-MB is already installed in", args.epymarl, "(nothing changed)")
    print("run it from that folder: python src/main.py --config=sale_mb --env-config=gymma with "
          "env_args.key=lbforaging:Foraging-8x8-2p-2f-coop-v3 env_args.time_limit=25")
    return 0


if __name__ == "__main__":
    sys.exit(main())
