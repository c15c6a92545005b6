"""Environment registry: ``REGISTRY[name](**env_args, common_reward=..., reward_scalarisation=...)``.

Each entry imports its module only when called, so an environment whose optional package is
missing breaks nothing else.
"""
import difflib
import functools
import importlib
import inspect


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


def constructor_arguments(creator):
    """The keyword arguments ``creator`` (a class or function) accepts; a class whose ``__init__``
    passes ``**kwargs`` on also accepts its base classes' arguments. None when anything goes."""
    accepted = set()
    for owner in creator.__mro__ if inspect.isclass(creator) else (creator,):
        if inspect.isclass(owner) and "__init__" not in vars(owner):
            continue
        if owner is object:
            return None
        parameters = inspect.signature(owner.__init__ if inspect.isclass(owner) else owner).parameters
        accepted.update(name for name, p in parameters.items()
                        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            return accepted
    return None


def check_kwargs(env_id, given, also_accepted=()):
    """Raise ValueError naming every key of ``given`` (``env_args.kwargs``) that the constructor
    of the Gymnasium env ``env_id`` does not take."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    creator = gym.spec(env_id).entry_point
    creator = load_env_creator(creator) if isinstance(creator, str) else creator
    accepted = constructor_arguments(creator)
    if accepted is None:
        return
    unknown = sorted(set(given) - accepted - set(also_accepted))
    if unknown:
        name = getattr(creator, "__qualname__", str(creator))
        hints = "".join(f" Did you mean {close[0]!r} for {u!r}?" for u in unknown
                        for close in [difflib.get_close_matches(u, sorted(accepted), n=1)] if close)
        raise ValueError(
            f"env_args.kwargs: {name} (the constructor of {env_id}) takes no argument "
            f"{', '.join(repr(u) for u in unknown)}.{hints} It takes: {', '.join(sorted(accepted))}.")
