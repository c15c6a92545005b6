"""Runs one environment in this process, one episode per ``run`` call."""
import numpy as np

from envs import REGISTRY as env_REGISTRY
from runners.base_runner import BaseRunner


class EpisodeRunner(BaseRunner):
    """Collects one episode per ``run`` into an EpisodeBatch of ``episode_limit + 1`` steps.

    Step t holds the state, observations and available actions seen at t, the actions taken
    there, the reward that followed and ``terminated`` (1 only at a real terminal, never at a
    time-out). The last filled slot holds the final state and observations and an action chosen
    there.
    """

    def __init__(self, args, logger):
        if args.batch_size_run != 1:
            raise ValueError(f"the episode runner runs one env: batch_size_run must be 1, not "
                             f"{args.batch_size_run} (use runner=parallel)")
        super().__init__(args, logger)
        self.batch_size = 1
        self.env = env_REGISTRY[args.env](**args.env_args, common_reward=args.common_reward,
                                          reward_scalarisation=args.reward_scalarisation)
        self.episode_limit = self.env.episode_limit

    @property
    def env_step_seconds(self):
        """Seconds spent inside the simulator's step (wrapper overhead excluded) so far."""
        return self.env.step_seconds

    def get_env_info(self):
        return self.env.get_env_info()

    def reset(self):
        self.batch = self.new_batch()
        self.writer.attach(self.batch)
        self.env.reset()
        self.t = 0

    def run(self, test_mode=False):
        self.reset()
        env, mac, batch, write = self.env, self.mac, self.batch, self.writer.write
        render = test_mode and self.args.render
        episode_return = 0.0 if self.args.common_reward else np.zeros(env.n_agents)
        mac.init_hidden(batch_size=self.batch_size)

        t, done, info = 0, False, {}
        while True:
            write({"state": env.get_state(), "avail_actions": env.get_avail_actions(), "obs": env.get_obs()}, 0, t)
            if render:
                env.render()
            actions = mac.select_actions(batch, t_ep=t, t_env=self.t_env, test_mode=test_mode).cpu().numpy()[0]
            stored = actions.reshape(env.n_agents, -1)  # indices [n, 1] or continuous [n, dims]
            if done:
                write({"actions": stored}, 0, t, mark_filled=False)
                break
            _, reward, terminated, truncated, info = env.step(actions.tolist())
            episode_return += reward
            write({"actions": stored, "reward": reward, "terminated": terminated}, 0, t, mark_filled=False)
            t += 1
            done = terminated or truncated or t >= self.episode_limit

        self.t = t
        self._episodes_finished([(episode_return, t, info)], test_mode)
        return batch

    def _env_rng_states(self):
        return [self.env.get_rng_state()]

    def _set_env_rng_states(self, rng_states):
        self.env.set_rng_state(rng_states[0])

    def save_replay(self):
        self.env.save_replay()

    def close_env(self):
        self.env.close()
