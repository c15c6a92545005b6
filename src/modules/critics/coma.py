"""COMA's counterfactual critic: Q(s, o_i, u_-i, .) gives, for agent i, the value of each of its
actions with the other agents' actions held fixed (Foerster et al., 2018)."""
import torch

from modules.critics.base import Critic, size_of


class COMACritic(Critic):
    """Inputs: state, the agent's observation, the other agents' actions one-hot (the agent's
    own zeroed) and the agent id. Output [B, T, n_agents, n_actions]."""

    def __init__(self, scheme, args):
        super().__init__(scheme, args, output_size=args.n_actions)

    def input_size(self, scheme):
        return (size_of(scheme["state"]["vshape"]) + size_of(scheme["obs"]["vshape"])
                + self.n_agents * self.args.n_actions)

    def inputs(self, batch):
        obs = batch["obs"]
        joint = self.per_agent("actions_onehot", batch)  # [B, T, n, n * A]
        others = 1 - torch.eye(self.n_agents, device=joint.device)
        others = others.repeat_interleave(self.args.n_actions, dim=1)  # [n, n * A]
        return torch.cat([self.per_agent("state", batch), obs.reshape(*obs.shape[:3], -1),
                          joint * others], dim=-1)
