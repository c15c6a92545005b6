"""A comparison grid: algorithms (or named variants) x env configs x seeds, with shared overrides.

A grid comes from the command line (`--configs=qmix,vdn --env-configs=lbf --seeds=3 with t_max=...`)
or a yaml file (`--grid FILE`) of this shape, where every key is optional but `configs` or
`variants`, and `env_configs`:

    name: lbf_baselines
    configs: [qmix, vdn]                 # each runs under its own name
    variants:                            # a config with overrides, run under the variant's name
      sale_mb_img25: {config: sale_mb, with: {imagined_td_weight: 0.25}}
    env_configs: [lbf]                   # or a mapping, like variants:
    #   lbf_8x8: {env_config: lbf, with: {env_args.key: "lbforaging:Foraging-8x8-2p-3f-v3"}}
    seeds: 3                             # 3 -> seeds 1, 2, 3; or a list [4, 8]
    with: {t_max: 400000}                # shared by every cell

Every cell's config is merged and validated (run_config.build_config) before any cell starts.
"""
import dataclasses
import itertools
import os
import re

from run_config import ConfigError, build_config, load_yaml, parse_overrides, parse_value

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A named config plus its own overrides (`key=value` tokens)."""
    name: str
    config: str
    overrides: tuple = ()


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the grid: its identity is `<alg entry>__<env entry>__seed<seed>`."""
    alg: Entry
    env: Entry
    seed: int
    overrides: tuple   # every `key=value` token passed to main.py, in order (later ones win)
    t_max: int

    @property
    def cell_id(self):
        return f"{self.alg.name}__{self.env.name}__seed{self.seed}"


@dataclasses.dataclass
class Grid:
    name: str
    algs: list
    envs: list
    seeds: list
    shared: tuple = ()


def format_value(value):
    """A yaml value as main.py's command line reads it back (run_config.parse_value)."""
    if value is None:
        return "null"
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return repr(value)


def tokens_from_mapping(mapping, source):
    if mapping is None:
        return ()
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: 'with' must be a mapping of key: value, not {type(mapping).__name__}.")
    return tuple(f"{key}={format_value(value)}" for key, value in mapping.items())


def parse_seeds(text):
    """`3` -> [1, 2, 3]; `4,8` -> [4, 8]; `10-12` -> [10, 11, 12]; a list stays a list."""
    if isinstance(text, int):
        return list(range(1, text + 1))
    if isinstance(text, list):
        return [int(seed) for seed in text]
    seeds = []
    try:
        if "," not in text and "-" not in text:
            return list(range(1, int(text) + 1))
        for part in filter(None, text.split(",")):
            low, _, high = part.partition("-")
            seeds.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ConfigError(f"--seeds={text}: write a count (3), a list (4,8) or a range (10-12).") from None
    return seeds


def parse_entry(text, flag):
    """`NAME=CONFIG key=value ...` (a --variant or --env-variant) -> Entry."""
    head, *tokens = text.split()
    name, sep, config = head.partition("=")
    if not sep or not name or not config:
        raise ConfigError(f"{flag} {text!r}: write NAME=CONFIG [key=value ...], e.g. "
                          f"{flag} 'qmix_lr=qmix lr=0.001'.")
    parse_overrides(tokens)
    return Entry(name, config, tuple(tokens))


def entries_from_yaml(value, config_key, source):
    """A yaml list of config names, or a mapping name -> {config_key: ..., with: {...}}."""
    if value is None:
        return []
    if isinstance(value, list):
        return [Entry(str(name), str(name)) for name in value]
    if isinstance(value, dict):
        entries = []
        for name, spec in value.items():
            if not isinstance(spec, dict) or config_key not in spec:
                raise ConfigError(f"{source}: entry {name!r} needs '{config_key}: <name>' (and optionally 'with').")
            entries.append(Entry(str(name), str(spec[config_key]), tokens_from_mapping(spec.get("with"), source)))
        return entries
    raise ConfigError(f"{source}: expected a list of names or a mapping of named entries, got {value!r}.")


def grid_from_yaml(path):
    content = load_yaml(path)
    known = {"name", "configs", "variants", "env_configs", "seeds", "with"}
    unknown = set(content) - known
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; the keys are {sorted(known)}.")
    algs = entries_from_yaml(content.get("configs"), "config", path)
    algs += entries_from_yaml(content.get("variants"), "config", path)
    envs = entries_from_yaml(content.get("env_configs"), "env_config", path)
    return Grid(content.get("name") or os.path.splitext(os.path.basename(path))[0], algs, envs,
                parse_seeds(content.get("seeds", 1)), tokens_from_mapping(content.get("with"), path))


def check_grid(grid):
    if not grid.name:
        raise ConfigError("The grid has no name: give --name=NAME (its folder under results/comparisons/).")
    if not NAME_PATTERN.match(grid.name):
        raise ConfigError(f"--name={grid.name!r}: use letters, digits, '_', '-' or '.' (it names a folder).")
    if not grid.algs:
        raise ConfigError("The grid has no algorithm: give --configs=qmix,vdn or --variant NAME=CONFIG ...")
    if not grid.envs:
        raise ConfigError("The grid has no environment: give --env-configs=lbf,...")
    if not grid.seeds:
        raise ConfigError("The grid has no seed: give --seeds=3 (seeds 1-3) or --seeds=4,8.")
    for kind, entries in (("algorithm", grid.algs), ("env", grid.envs)):
        names = [entry.name for entry in entries]
        for entry in entries:
            if not NAME_PATTERN.match(entry.name):
                raise ConfigError(f"{kind} name {entry.name!r}: use letters, digits, '_', '-' or '.'.")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"The grid names {kind} {duplicates} more than once; give each entry its own name.")
    if len(set(grid.seeds)) != len(grid.seeds):
        raise ConfigError(f"Seeds {grid.seeds} repeat a seed.")


def cell_overrides(grid, alg, env, seed):
    """Shared overrides, then the env's, then the variant's; the cell's name and seed last."""
    tokens = [*grid.shared, *env.overrides, *alg.overrides]
    if alg.name != alg.config:
        tokens.append(f"name={alg.name}")
    tokens.append(f"seed={seed}")
    return tuple(tokens)


def expand(grid):
    """The grid's cells, seed by seed (an interrupted grid already holds comparable sets).

    Raises ConfigError naming the cell when a cell's config does not validate.
    """
    check_grid(grid)
    cells = []
    for seed, env, alg in itertools.product(grid.seeds, grid.envs, grid.algs):
        overrides = cell_overrides(grid, alg, env, seed)
        try:
            config = build_config(alg.config, env.config, parse_overrides(overrides))
        except ConfigError as err:
            raise ConfigError(f"cell {alg.name} on {env.name}: {err}") from None
        cells.append(Cell(alg, env, seed, overrides, config["t_max"]))
    return cells
