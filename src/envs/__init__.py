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
    "mamujoco": functools.partial(_lazy_env, "envs.mamujoco", "MaMuJoCoWrapper"),
}
