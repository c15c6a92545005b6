"""A Gaussian policy over continuous actions on top of any agent network.

The wrapped agent's outputs ([N, n_actions], one per action dimension) are the means; a learned,
state-independent log standard deviation (``log_std``, one per dimension, starting at
``log_std_init``) completes the distribution. Outputs are [mean, log_std], 2 * n_actions values.
"""
import torch
import torch.nn as nn


class GaussianHead(nn.Module):
    def __init__(self, agent, n_actions, log_std_init=0.0):
        super().__init__()
        self.agent = agent
        self.log_std = nn.Parameter(torch.full((n_actions,), float(log_std_init)))

    def init_hidden(self):
        return self.agent.init_hidden()

    def forward(self, inputs, hidden_state):
        """inputs [N, in] -> ([N, 2 * n_actions], hidden [N, H])."""
        mean, hidden = self.agent(inputs, hidden_state)
        return self._with_log_std(mean), hidden

    def forward_sequence(self, inputs, hidden_state):
        """inputs [N, T, in] -> ([N, T, 2 * n_actions], hidden [N, T, H])."""
        mean, hidden = self.agent.forward_sequence(inputs, hidden_state)
        return self._with_log_std(mean), hidden

    def _with_log_std(self, mean):
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)
