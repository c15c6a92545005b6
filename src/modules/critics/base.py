"""What every critic shares: a 3-layer MLP (ReLU) applied to each agent's critic inputs, one
network for all agents (told apart by an id input) or, for the ``_ns`` variants, one per agent.

A critic is built as ``cls(scheme, args)`` and called on a whole EpisodeBatch:
``critic(batch) -> [B, T, n_agents, output_size]``.
"""
import math

import torch
import torch.nn as nn


def size_of(vshape):
    return vshape if isinstance(vshape, int) else math.prod(vshape)


def _mlp(input_size, hidden_dim, output_size):
    return nn.Sequential(nn.Linear(input_size, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, output_size))


class Critic(nn.Module):
    """Subclasses give ``input_size(scheme)``, ``inputs(batch) -> [B, T, n_agents, in]`` and
    ``output_size``; ``shared`` is False for one network per agent (then no id input)."""

    shared = True

    def __init__(self, scheme, args, output_size=1):
        super().__init__()
        self.n_agents = args.n_agents
        self.args = args
        input_size = self.input_size(scheme) + (self.n_agents if self.shared else 0)
        count = 1 if self.shared else self.n_agents
        self.nets = nn.ModuleList([_mlp(input_size, args.hidden_dim, output_size) for _ in range(count)])

    def forward(self, batch):
        inputs = self.inputs(batch)
        if self.shared:
            ids = torch.eye(self.n_agents, device=inputs.device).expand(*inputs.shape[:2], -1, -1)
            return self.nets[0](torch.cat([inputs, ids], dim=-1))
        return torch.stack([net(inputs[:, :, i]) for i, net in enumerate(self.nets)], dim=2)

    def per_agent(self, field, batch):
        """An ungrouped field [B, T, ...] flattened and repeated for every agent [B, T, n, d]."""
        values = batch[field]
        return values.reshape(*values.shape[:2], 1, -1).expand(-1, -1, self.n_agents, -1)
