"""MAA2C / MAPPO's centralised critic: V(s) from the global state (with
``obs_individual_obs`` also every agent's observation), one estimate per agent."""
import torch

from modules.critics.base import Critic, size_of


class CentralVCritic(Critic):
    """Inputs: the state, optionally all observations, and the agent id. Output [B, T, n, 1]."""

    def input_size(self, scheme):
        size = size_of(scheme["state"]["vshape"])
        if self.args.obs_individual_obs:
            size += size_of(scheme["obs"]["vshape"]) * self.n_agents
        return size

    def inputs(self, batch):
        parts = [self.per_agent("state", batch)]
        if self.args.obs_individual_obs:
            parts.append(self.per_agent("obs", batch))
        return torch.cat(parts, dim=-1)
