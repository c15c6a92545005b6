"""Environment registry: ``REGISTRY[name](**env_args, common_reward=..., reward_scalarisation=...)``.

Each entry imports its module only when called, so an environment whose optional package is
missing breaks nothing else.
"""
import functools
import importlib


def _lazy_env(module_name, class_name, **env_args):
    env_class = getattr(importlib.import_module(module_name), class_name)
    return env_class(**env_args)


REGISTRY = {
    "gymma": functools.partial(_lazy_env, "envs.gymma", "GymmaWrapper"),
    "matrix_game": functools.partial(_lazy_env, "envs.matrix_game", "MatrixGame"),
    "continuous_game": functools.partial(_lazy_env, "envs.continuous_game", "ContinuousGame"),
    "smax": functools.partial(_lazy_env, "envs.smax", "SMAXEnv"),
    "sc2v2": functools.partial(_lazy_env, "envs.sc2v2", "SC2v2Env"),
    "mamujoco": functools.partial(_lazy_env, "envs.mamujoco", "MaMuJoCoWrapper"),
}


def _env_module(name):
    """The module of a lazily registered env, or None for an env registered another way."""
    entry = REGISTRY[name]
    if not isinstance(entry, functools.partial) or entry.func is not _lazy_env:
        return None
    return importlib.import_module(entry.args[0])


def has_continuous_actions(name, env_args):
    """Whether the env built from ``env_args`` takes continuous actions, known before building it:
    its module's ``has_continuous_actions(**env_args)``, else False."""
    check = getattr(_env_module(name), "has_continuous_actions", None)
    return bool(check is not None and check(**env_args))


def check_requirements(name, env_args):
    """Run an env's own start-up checks (a missing optional package or game, an unknown map)
    without building it, so a run stops before any work starts. Each env module may define
    ``check_requirements(**env_args)``, raising ImportError, FileNotFoundError or ValueError."""
    check = getattr(_env_module(name), "check_requirements", None)
    if check is not None:
        check(**env_args)
