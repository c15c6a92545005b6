"""What the episode and parallel runners share: batches, counters and statistics logging."""
from functools import partial

from components.episode_buffer import EpisodeBatch
from runners.batch_writer import BatchWriter
from runners.episode_stats import EpisodeStats


class BaseRunner:
    """Subclasses set ``batch_size`` and ``episode_limit`` before ``setup`` and implement ``run``,
    ``get_env_info``, ``_env_rng_states``, ``_set_env_rng_states``, ``save_replay`` and ``close_env``.

    Training statistics are logged every ``runner_log_interval`` env steps, test statistics once
    ``test_nepisode`` test episodes have been collected (``last_test_return_mean`` keeps their
    mean return for the console).
    """

    def __init__(self, args, logger):
        self.args = args
        self.logger = logger
        self.t = 0
        self.t_env = 0
        self.log_train_stats_t = -1000000
        self.train_stats = EpisodeStats("", args.common_reward)
        self.test_stats = EpisodeStats("test_", args.common_reward)
        self.last_test_return_mean = None
        self.new_batch = None
        self.batch = None
        self.writer = None
        self.mac = None

    def setup(self, scheme, groups, preprocess, mac):
        # Episodes are written where the acting MAC lives (run.acting_mac); the buffer moves them.
        device = "cpu" if self.args.act_on_cpu else self.args.device
        self.new_batch = partial(EpisodeBatch, scheme, groups, self.batch_size, self.episode_limit + 1,
                                 preprocess=preprocess, device=device)
        self.writer = BatchWriter(preprocess, device)
        self.mac = mac

    def _episodes_finished(self, episodes, test_mode):
        """Records ``(return, length, final info)`` of each finished episode and logs when due."""
        if not test_mode:
            self.t_env += sum(length for _, length, _ in episodes)
        stats = self.test_stats if test_mode else self.train_stats
        for episode_return, length, final_info in episodes:
            stats.add(episode_return, length, final_info)
        if test_mode:
            if len(self.test_stats) >= self.args.test_nepisode:
                self.last_test_return_mean = self.test_stats.log(self.logger, self.t_env)
        elif self.t_env - self.log_train_stats_t >= self.args.runner_log_interval:
            self.train_stats.log(self.logger, self.t_env)
            epsilon = getattr(self.mac.action_selector, "epsilon", None)
            if epsilon is not None:
                self.logger.log_stat("epsilon", epsilon, self.t_env)
            self.log_train_stats_t = self.t_env

    def get_state(self):
        """Counters, unlogged training statistics and every env's RNG state (for resume)."""
        return {"t_env": self.t_env, "log_train_stats_t": self.log_train_stats_t,
                "env_rng_states": self._env_rng_states(), "train_stats": self.train_stats.state_dict()}

    def set_state(self, state):
        rng_states = state["env_rng_states"]
        if len(rng_states) != self.batch_size:
            raise ValueError(f"the saved runner state holds {len(rng_states)} envs, this runner runs "
                             f"{self.batch_size} (batch_size_run)")
        self.t_env = state["t_env"]
        self.log_train_stats_t = state["log_train_stats_t"]
        self._set_env_rng_states(rng_states)
        self.train_stats.load_state_dict(state["train_stats"])
