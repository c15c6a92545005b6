"""Statistics of finished episodes (returns, lengths, env info), logged as means by the runners."""
import numbers

import numpy as np


class EpisodeStats:
    """Accumulates finished episodes and logs their summary under ``prefix`` ("" or "test_").

    Logged keys: ``return_mean``/``return_std`` (per-agent rewards: ``total_return_*`` and
    ``agent_{i}_return_*``), ``ep_length_mean``, and ``<key>_mean`` for every numeric key of the
    episodes' final info dicts (``episode_limit`` excluded), averaged over all episodes.
    """

    def __init__(self, prefix, common_reward):
        self.prefix = prefix
        self.common_reward = common_reward
        self.returns = []
        self.length_sum = 0
        self.info_sums = {}

    def __len__(self):
        return len(self.returns)

    def add(self, episode_return, length, final_info):
        self.returns.append(episode_return)
        self.length_sum += length
        for key, value in final_info.items():
            if key != "episode_limit" and isinstance(value, (numbers.Number, np.number)):
                self.info_sums[key] = self.info_sums.get(key, 0) + value

    def log(self, logger, t_env):
        """Logs the summary and starts afresh; returns the mean (team) return."""
        prefix, n_episodes = self.prefix, len(self.returns)
        returns = np.asarray(self.returns, dtype=np.float64)
        if self.common_reward:
            team_returns = returns
        else:
            team_returns = returns.sum(axis=1)
            for agent_id in range(returns.shape[1]):
                logger.log_stat(f"{prefix}agent_{agent_id}_return_mean", returns[:, agent_id].mean(), t_env)
                logger.log_stat(f"{prefix}agent_{agent_id}_return_std", returns[:, agent_id].std(), t_env)
        name = "return" if self.common_reward else "total_return"
        mean_return = float(team_returns.mean())
        logger.log_stat(f"{prefix}{name}_mean", mean_return, t_env)
        logger.log_stat(f"{prefix}{name}_std", float(team_returns.std()), t_env)
        logger.log_stat(f"{prefix}ep_length_mean", self.length_sum / n_episodes, t_env)
        for key, total in self.info_sums.items():
            logger.log_stat(f"{prefix}{key}_mean", total / n_episodes, t_env)
        self.returns, self.length_sum, self.info_sums = [], 0, {}
        return mean_return

    def state_dict(self):
        return {"returns": list(self.returns), "length_sum": self.length_sum, "info_sums": dict(self.info_sums)}

    def load_state_dict(self, state):
        self.returns = list(state["returns"])
        self.length_sum = state["length_sum"]
        self.info_sums = dict(state["info_sums"])
