"""VDN: the joint Q-value is the sum of the agents' Q-values."""
import torch.nn as nn


class VDNMixer(nn.Module):
    def __init__(self, args=None):
        super().__init__()

    def forward(self, agent_qs, states=None):
        """agent_qs [B, T, n_agents] -> Q_tot [B, T, 1]; the state is not used."""
        return agent_qs.sum(dim=-1, keepdim=True)
