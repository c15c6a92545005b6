"""IA2C / IPPO's decentralised critic: V(o_i) from each agent's own observation."""
from modules.critics.base import Critic, size_of


class ACCritic(Critic):
    """Inputs: the agent's observation (and id). Output [B, T, n_agents, 1]."""

    def input_size(self, scheme):
        return size_of(scheme["obs"]["vshape"])

    def inputs(self, batch):
        obs = batch["obs"]
        return obs.reshape(*obs.shape[:3], -1)
