"""QMIX: mix the agents' Q-values with a state-conditioned network that is monotonic in each.

Hypernetworks map the state to the mixing weights, which are made non-negative with abs(), so
dQ_tot/dQ_i >= 0. One ELU hidden layer of ``mixing_embed_dim`` units; the output bias is a state
value V(s). Parameter names match EPyMARL's ``QMixer`` (``mixer.th`` loads in either framework).
"""
import math

import torch.nn as nn
import torch.nn.functional as F


def _hypernet(in_dim, out_dim, layers, hidden):
    if layers == 1:
        return nn.Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    raise ValueError(f"hypernet_layers must be 1 or 2, got {layers!r}")


class QMixer(nn.Module):
    def __init__(self, args, input_dim=None):
        """``input_dim``: size of what the hypernetworks read (default: the state's size)."""
        super().__init__()
        self.n_agents = args.n_agents
        self.state_dim = state_size(args) if input_dim is None else int(input_dim)
        self.embed_dim = args.mixing_embed_dim
        layers = getattr(args, "hypernet_layers", 1)
        hidden = getattr(args, "hypernet_embed", 64)

        self.hyper_w_1 = _hypernet(self.state_dim, self.embed_dim * self.n_agents, layers, hidden)
        self.hyper_w_final = _hypernet(self.state_dim, self.embed_dim, layers, hidden)
        self.hyper_b_1 = nn.Linear(self.state_dim, self.embed_dim)
        self.V = nn.Sequential(nn.Linear(self.state_dim, self.embed_dim), nn.ReLU(),
                               nn.Linear(self.embed_dim, 1))

    def forward(self, agent_qs, states):
        """agent_qs [B, T, n_agents], states [B, T, *state_shape] -> Q_tot [B, T, 1]."""
        leading = agent_qs.shape[:-1]
        states = states.reshape(-1, self.state_dim)  # one contiguous copy for all hypernetworks
        agent_qs = agent_qs.reshape(-1, self.n_agents, 1)
        w1 = self.hyper_w_1(states).abs().view(-1, self.n_agents, self.embed_dim)
        hidden = F.elu((agent_qs * w1).sum(dim=1) + self.hyper_b_1(states))
        w_final = self.hyper_w_final(states).abs()
        q_tot = (hidden * w_final).sum(dim=1, keepdim=True) + self.V(states)
        return q_tot.view(*leading, 1)


def state_size(args):
    shape = args.state_shape
    return int(math.prod(shape)) if isinstance(shape, (tuple, list)) else int(shape)
