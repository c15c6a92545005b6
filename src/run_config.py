"""Loading, merging and validating run configs.

A run's config is `default.yaml`, then `envs/<env>.yaml`, then `algs/<alg>.yaml`, then the
command line's `with key=value` overrides, merged key by key (nested dicts too). The merged config
is checked once, before any environment starts:

- every key must be declared by one of the yaml files (a typo'd override is refused with the
  closest valid names);
- a key an env or alg file adds that is one letter away from a known key is refused as a typo;
- a value must have the type the yaml files give that key (ints are accepted for floats, a
  whole float such as `2e6` for an int, and null for an `env_args` entry);
- a value must lie in the range a key's comment in default.yaml declares (`# ...; range (0, 1]`,
  `range >= 1`);
- names picked through a registry (`runner`, `mac`, `agent`, `learner`, `mixer`, `env`,
  `action_selector`, `world_model`) must be registered, and a learner with a `check_config`
  hook gets to refuse inconsistent settings.

An alg file may start from another with `extends: <alg>` (the ablation configs do): the parent's
keys, then the file's own.
"""
import ast
import difflib
import operator
import os
import random
import re
from copy import deepcopy

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")
REPO_ROOT = os.path.dirname(os.path.dirname(CONFIG_DIR))


class ConfigError(ValueError):
    """A config problem found before the run starts; the message says how to fix it."""


def _closest(name, candidates, n=3):
    """Close spellings first, then keys that `name` extends (`lr_rate` -> `lr`)."""
    name = str(name)
    matches = difflib.get_close_matches(name, sorted(candidates), n=n, cutoff=0.6)
    leaf = name.rsplit(".", 1)[-1]
    for candidate in sorted(candidates, key=len, reverse=True):
        stem = str(candidate).rsplit(".", 1)[-1]
        if len(matches) < n and candidate not in matches and len(stem) >= 2 and leaf.startswith(stem + "_"):
            matches.append(candidate)
    return f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def available_configs(kind):
    """Names of the yaml files under `config/<kind>/` (kind: "algs" or "envs")."""
    folder = os.path.join(CONFIG_DIR, kind)
    return sorted(f[: -len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))


def load_yaml(path):
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, not {type(content).__name__}.")
    return content


def load_named_config(kind, name):
    """Load `config/<kind>/<name>.yaml`, with a clear error for a missing file."""
    flag = "--config" if kind == "algs" else "--env-config"
    if not name:
        raise ConfigError(
            f"No {flag} given. Choose one of: {', '.join(available_configs(kind))}.")
    path = os.path.join(CONFIG_DIR, kind, f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(
            f"{flag}={name}: there is no {os.path.relpath(path, REPO_ROOT)}."
            f"{_closest(name, available_configs(kind))} Available: {', '.join(available_configs(kind))}.")
    content = load_yaml(path)
    parent = content.pop("extends", None) if kind == "algs" else None
    if parent is not None:
        if parent == name:
            raise ConfigError(f"{os.path.relpath(path, REPO_ROOT)} extends itself.")
        content = merge(load_named_config("algs", parent), content)
    return content


def parse_value(text):
    """Turn a command-line value into a Python value, as Sacred does, plus YAML's null/true/false."""
    lowered = text.strip().lower()
    if lowered in ("null", "none", "~"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(tokens):
    """`["lr=0.1", "env_args.key=x"]` -> `[("lr", 0.1), ("env_args.key", "x")]`."""
    overrides = []
    for token in tokens:
        if "=" not in token:
            raise ConfigError(f"Cannot read override {token!r}: write it as key=value, e.g. lr=0.001.")
        key, value = token.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"Override {token!r} has no key before '='.")
        overrides.append((key, parse_value(value)))
    return overrides


def parse_command_line(argv):
    """Split `main.py --config=A --env-config=E with k=v ...` into (alg, env, overrides)."""
    alg_name = env_name = None
    rest = list(argv)
    override_tokens = []
    if "with" in rest:
        at = rest.index("with")
        override_tokens = rest[at + 1:]
        rest = rest[:at]
    for arg in rest:
        if arg.startswith("--config="):
            alg_name = arg.split("=", 1)[1]
        elif arg.startswith("--env-config="):
            env_name = arg.split("=", 1)[1]
        elif arg in ("--config", "--env-config"):
            raise ConfigError(f"Write {arg}=<name> (with '='), e.g. --config=qmix --env-config=lbf.")
        else:
            raise ConfigError(
                f"Unknown argument {arg!r}. Usage: python src/main.py --config=<alg> "
                f"--env-config=<env> [with key=value ...]")
    return alg_name, env_name, parse_overrides(override_tokens)


# --- merging and declared types ------------------------------------------------------------------

def merge(base, update):
    """Recursively merge `update` into a copy of `base` (nested dicts key by key)."""
    merged = deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = deepcopy(value)
    return merged


def _type_name(value):
    return "null" if value is None else type(value).__name__


def declared_types(layers):
    """Map each dotted key to the set of type names the yaml layers give it.

    A dict that every layer leaves empty (`{}`) is open: any keys may go inside it.
    """
    types = {}

    def visit(prefix, mapping):
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            types.setdefault(path, set()).add(_type_name(value))
            if isinstance(value, dict):
                visit(path + ".", value)

    for layer in layers:
        visit("", layer)
    return types


def _is_open(path, types):
    prefix = path + "."
    return not any(k.startswith(prefix) for k in types)


def check_file_keys(base_types, layer, source):
    """Refuse keys an env/alg file adds that look like typos of known keys."""
    known = set(base_types)
    for path in declared_types([layer]):
        parent = path.rsplit(".", 1)[0] if "." in path else None
        if path in known or (parent is not None and parent in known and _is_open(parent, base_types)):
            continue
        if parent is not None and parent not in known:
            continue  # inside a dict the file itself adds
        siblings = [k for k in known if k.count(".") == path.count(".")]
        close = difflib.get_close_matches(path, siblings, n=1, cutoff=0.85)
        if close:
            raise ConfigError(
                f"{source} sets {path!r}, which no other config declares; it looks like a typo of "
                f"{close[0]!r}. Fix the name (or give a new key a more distinct name).")


def _coerce(path, value, allowed):
    """Check `value` against the type names `allowed`; return it (ints from whole floats)."""
    if "null" in allowed and len(allowed) == 1:
        return value  # declared as null only: free
    kind = _type_name(value)
    if kind in allowed or value is None and "null" in allowed:
        return value
    if value is None and path.startswith("env_args."):
        return value  # an env argument may be switched off (e.g. env_args.action_bins=null)
    if kind == "int" and "float" in allowed:
        return float(value)
    if kind == "float" and "int" in allowed and float(value).is_integer():
        return int(value)
    if kind == "int" and "bool" in allowed and value in (0, 1):
        return bool(value)
    expected = " or ".join(sorted(allowed))
    if value is None:
        raise ConfigError(f"{path} cannot be null; it takes a {expected}.")
    raise ConfigError(f"{path}={value!r} has type {kind}, but {path} takes a {expected}.")


def apply_overrides(config, overrides, types):
    """Apply dotted-key overrides after checking each key is declared and the type fits."""
    config = deepcopy(config)
    for path, value in overrides:
        parts = path.split(".")
        declared = path in types
        parent = ".".join(parts[:-1])
        inside_open_dict = bool(parent) and parent in types and "dict" in types[parent] and _is_open(parent, types)
        if not declared and not inside_open_dict:
            siblings = [k for k in types if k.count(".") == path.count(".")]
            raise ConfigError(
                f"Unknown config key {path!r}.{_closest(path, siblings)} "
                f"Keys are declared in src/config/default.yaml and the chosen env/alg files.")
        if declared:
            value = _coerce(path, value, types[path])
        node = config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Cannot set {path!r}: {part!r} is not a mapping.")
        node[parts[-1]] = value
    return config


def check_layer_types(layer, types, source):
    """Check every value an env/alg file sets against the types default.yaml gives it."""
    def visit(prefix, mapping):
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            if path in types and value is not None:
                _coerce(path, value, types[path])
            if isinstance(value, dict):
                visit(path + ".", value)
    try:
        visit("", layer)
    except ConfigError as err:
        raise ConfigError(f"In {source}: {err}") from None


_RANGE = re.compile(r"#.*\brange\s+(?:(?P<op>>=|>|<=|<)\s*(?P<bound>[-+.\deE]+)"
                    r"|(?P<open>[(\[])\s*(?P<low>[-+.\deE]+)\s*,\s*(?P<high>[-+.\deE]+)\s*(?P<close>[)\]]))\s*$")
_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def declared_ranges(path=None):
    """`{key: (text, test)}` for every top-level key whose comment in `path` (default.yaml) ends in
    a range: `range (0, 1]`, `range [0, 1)`, `range >= 1`, `range > 0`, ..."""
    path = path or os.path.join(CONFIG_DIR, "default.yaml")
    ranges = {}
    with open(path) as f:
        for line in f:
            key, match = re.match(r"^(\w+):", line), _RANGE.search(line)
            if not key or not match:
                continue
            if match["op"]:
                op, bound = _COMPARE[match["op"]], float(match["bound"])
                ranges[key[1]] = (f"{match['op']} {match['bound']}", lambda v, op=op, b=bound: op(v, b))
            else:
                low, high = float(match["low"]), float(match["high"])
                above = operator.gt if match["open"] == "(" else operator.ge
                below = operator.lt if match["close"] == ")" else operator.le
                text = f"in {match['open']}{match['low']}, {match['high']}{match['close']}"
                ranges[key[1]] = (text, lambda v, a=above, b=below, lo=low, hi=high: a(v, lo) and b(v, hi))
    return ranges


def check_ranges(config):
    """Every value with a declared range lies in it."""
    for key, (text, test) in declared_ranges().items():
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not test(value):
            raise ConfigError(f"{key}={value!r} is out of range: {key} must be {text} "
                              f"(declared in src/config/default.yaml).")


def check_registries(config):
    """Every name picked through a registry must be registered."""
    from controllers import REGISTRY as mac_registry
    from components.action_selectors import REGISTRY as selector_registry
    from envs import REGISTRY as env_registry
    from learners import REGISTRY as learner_registry
    from modules.agents import REGISTRY as agent_registry
    from modules.mixers import REGISTRY as mixer_registry
    from modules.world_models import REGISTRY as world_model_registry
    from runners import REGISTRY as runner_registry

    checks = [("env", env_registry), ("runner", runner_registry), ("mac", mac_registry),
              ("agent", agent_registry), ("learner", learner_registry),
              ("action_selector", selector_registry), ("mixer", mixer_registry),
              ("world_model", world_model_registry)]
    for key, registry in checks:
        name = config.get(key)
        if key in ("mixer", "world_model") and name is None:
            continue
        if name not in registry:
            raise ConfigError(
                f"{key}={name!r} is not registered.{_closest(name, registry)} "
                f"Registered {key} names: {', '.join(sorted(registry))}.")
    check_learner = getattr(learner_registry[config["learner"]], "check_config", None)
    if check_learner is not None:
        try:
            check_learner(config)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def check_consistency(config):
    """Cross-key rules that would otherwise fail late or silently."""
    if config["evaluate"] and not config["checkpoint_path"]:
        raise ConfigError("evaluate=True needs checkpoint_path=<a run's models folder> to evaluate.")
    if config["resume"] and not config["checkpoint_path"]:
        raise ConfigError("resume=True needs checkpoint_path=<the interrupted run's models folder>.")
    if config["runner"] == "episode" and config["batch_size_run"] != 1:
        raise ConfigError(
            f"runner=episode steps one env, but batch_size_run={config['batch_size_run']}. "
            f"Use runner=parallel for several envs, or batch_size_run=1.")
    check_ranges(config)
    if config["batch_size"] > config["buffer_size"]:
        raise ConfigError(
            f"batch_size={config['batch_size']} episodes cannot be sampled from a buffer of "
            f"buffer_size={config['buffer_size']} episodes.")
    if config["reward_scalarisation"] not in ("sum", "mean"):
        raise ConfigError(f"reward_scalarisation must be 'sum' or 'mean', got {config['reward_scalarisation']!r}.")


def build_config(alg_name, env_name, overrides, check_names=True):
    """Load, merge and validate a run's config; return the final dict."""
    default = load_yaml(os.path.join(CONFIG_DIR, "default.yaml"))
    env_config = load_named_config("envs", env_name)
    alg_config = load_named_config("algs", alg_name)

    base_types = declared_types([default])
    check_file_keys(base_types, env_config, f"src/config/envs/{env_name}.yaml")
    check_layer_types(env_config, base_types, f"src/config/envs/{env_name}.yaml")
    env_types = declared_types([default, env_config])
    check_file_keys(env_types, alg_config, f"src/config/algs/{alg_name}.yaml")
    check_layer_types(alg_config, env_types, f"src/config/algs/{alg_name}.yaml")

    types = declared_types([default, env_config, alg_config])
    config = merge(merge(default, env_config), alg_config)
    config = apply_overrides(config, overrides, types)

    if config["seed"] is None:
        config["seed"] = random.SystemRandom().randrange(2 ** 31)
    config["env_args"]["seed"] = config["seed"]
    check_consistency(config)
    if check_names:
        check_registries(config)
    return config
