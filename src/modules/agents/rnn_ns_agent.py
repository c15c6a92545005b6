"""Non-shared agents: one ``RNNAgent`` per agent, no parameters shared.

Rows of the inputs are agent-major within each batch entry ([B * n_agents, ...] viewed as
[B, n_agents, ...]), as the controllers build them. Parameter names (``agents.<i>.fc1`` ...)
match EPyMARL's ``RNNNSAgent``.
"""
import torch
import torch.nn as nn

from modules.agents.rnn_agent import RNNAgent


class RNNNSAgent(nn.Module):
    def __init__(self, input_shape, args):
        super().__init__()
        self.n_agents = args.n_agents
        self.hidden_dim = args.hidden_dim
        self.agents = nn.ModuleList([RNNAgent(input_shape, args) for _ in range(self.n_agents)])

    def init_hidden(self):
        """Zero hidden states [n_agents, hidden_dim] (EPyMARL's shape for this agent)."""
        return torch.cat([agent.init_hidden() for agent in self.agents])

    def forward(self, inputs, hidden_state):
        """inputs [B * n_agents, in], hidden holding B * n_agents * H values.
        Returns (q [B * n_agents, n_actions], h [B * n_agents, H])."""
        inputs = inputs.reshape(-1, self.n_agents, inputs.shape[-1])
        hidden_state = hidden_state.reshape(-1, self.n_agents, self.hidden_dim)
        outs = [agent(inputs[:, i], hidden_state[:, i]) for i, agent in enumerate(self.agents)]
        return self._join(outs)

    def forward_sequence(self, inputs, hidden_state):
        """inputs [B * n_agents, T, in], hidden before the first step.
        Returns (q [B * n_agents, T, n_actions], h [B * n_agents, T, H])."""
        inputs = inputs.reshape(-1, self.n_agents, *inputs.shape[1:])
        hidden_state = hidden_state.reshape(-1, self.n_agents, self.hidden_dim)
        outs = [agent.forward_sequence(inputs[:, i], hidden_state[:, i])
                for i, agent in enumerate(self.agents)]
        return self._join(outs)

    @staticmethod
    def _join(outs):
        """Per-agent (q, h) pairs of [B, ...] -> agent-major [B * n_agents, ...] tensors."""
        qs, hs = zip(*outs)
        q = torch.stack(qs, dim=1)
        h = torch.stack(hs, dim=1)
        return q.flatten(0, 1), h.flatten(0, 1)
