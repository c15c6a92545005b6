"""The standard agent network: fc1 -> ReLU -> GRU cell (or Linear + ReLU) -> fc2.

Parameter names (``fc1``, ``rnn``, ``fc2``) match EPyMARL's ``RNNAgent``, so ``agent.th`` files
load in either framework.
"""
import torch.nn as nn
import torch.nn.functional as F

from utils.gru_sequence import gru_cell_sequence


class RNNAgent(nn.Module):
    traceable = True  # forward is fixed tensor work on inputs and parameters (BasicMAC traces it)

    def __init__(self, input_shape, args):
        super().__init__()
        self.hidden_dim = args.hidden_dim
        self.use_rnn = args.use_rnn
        self.fc1 = nn.Linear(input_shape, args.hidden_dim)
        if self.use_rnn:
            self.rnn = nn.GRUCell(args.hidden_dim, args.hidden_dim)
        else:
            self.rnn = nn.Linear(args.hidden_dim, args.hidden_dim)
        self.fc2 = nn.Linear(args.hidden_dim, args.n_actions)

    def init_hidden(self):
        """Zero hidden state [1, hidden_dim] on the parameters' device."""
        return self.fc1.weight.new_zeros(1, self.hidden_dim)

    def forward(self, inputs, hidden_state):
        """One step. inputs [N, input_shape], hidden [N, H] (any shape holding N*H values).
        Returns (q [N, n_actions], h [N, H])."""
        x = F.relu(self.fc1(inputs))
        if self.use_rnn:
            h = self.rnn(x, hidden_state.reshape(-1, self.hidden_dim))
        else:
            h = F.relu(self.rnn(x))
        return self.fc2(h), h

    def forward_sequence(self, inputs, hidden_state):
        """All steps at once. inputs [N, T, input_shape], hidden [N, H] before the first step.
        Returns (q [N, T, n_actions], h [N, T, H]), equal to calling ``forward`` T times."""
        x = F.relu(self.fc1(inputs))
        if self.use_rnn:
            h = gru_cell_sequence(self.rnn, x, hidden_state, self.training)
        else:
            h = F.relu(self.rnn(x))
        return self.fc2(h), h

