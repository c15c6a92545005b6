"""Runs the ``sc2v2`` env on a stand-in for smacv2 (``smacv2_standin/smacv2``), for tests only.

StarCraft II cannot be installed on the machines these tests run on, so nothing can step a real
SMACv2 battle. The stand-in follows smacv2's API with a toy battle, and a fake game folder (empty
files) satisfies the wrapper's start-up check; nothing here exercises the real game. Tests that
need no battle use the real smacv2 package instead (tests/test_sc2v2.py).
"""
import os
import sys

STANDIN_PATH = os.path.dirname(os.path.abspath(__file__))


def install_fake_game(root):
    """A folder laid out like a StarCraft II install with smacv2's maps (empty files); returns it."""
    binary = os.path.join(str(root), "Versions", "Base75689", "SC2_x64")
    map_file = os.path.join(str(root), "Maps", "SMAC_Maps", "32x32_flat.SC2Map")
    for path in (binary, map_file):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()
    return str(root)


def forget_smacv2(monkeypatch):
    """Drops every imported ``smacv2`` module (real or stand-in), so the next import finds it afresh."""
    for name in [name for name in sys.modules if name.split(".")[0] == "smacv2"]:
        monkeypatch.delitem(sys.modules, name)


def use_smacv2_standin(monkeypatch, tmp_path):
    """Makes ``import smacv2`` find the stand-in and SC2PATH point at a fake game, for one test."""
    forget_smacv2(monkeypatch)
    monkeypatch.syspath_prepend(STANDIN_PATH)
    monkeypatch.setenv("SC2PATH", install_fake_game(tmp_path / "StarCraftII"))


def standin_env_vars(tmp_path):
    """Environment variables for a subprocess (the real entry point) that should use the stand-in."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [STANDIN_PATH, os.environ.get("PYTHONPATH")])),
            "SC2PATH": install_fake_game(tmp_path / "StarCraftII")}
