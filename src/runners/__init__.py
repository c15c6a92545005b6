"""Runners, picked by the config key ``runner``; built as ``cls(args, logger)``."""
from runners.episode_runner import EpisodeRunner
from runners.parallel_runner import ParallelRunner

REGISTRY = {
    "episode": EpisodeRunner,
    "parallel": ParallelRunner,
}
