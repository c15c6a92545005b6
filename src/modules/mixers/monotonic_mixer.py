"""The monotonic mixing network of QMIX over any conditioning input (shipped with the SALE-MB
plugin: imports torch only).

Hypernetworks map the input c (the state for QMIX, the context for QMIX-SALE) to the mixing
weights, made non-negative with abs(), so dQ_tot/dQ_i >= 0. One ELU hidden layer of
``embed_dim`` units; the output bias is a value V(c). Parameter names match EPyMARL's ``QMixer``
(``mixer.th`` loads in either framework).
"""
import torch.nn as nn
import torch.nn.functional as F


def _hypernet(in_dim, out_dim, layers, hidden):
    if layers == 1:
        return nn.Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    raise ValueError(f"hypernet_layers must be 1 or 2, got {layers!r}")


class MonotonicMixer(nn.Module):
    def __init__(self, n_agents, input_dim, embed_dim, hypernet_layers, hypernet_embed):
        super().__init__()
        self.n_agents = n_agents
        self.state_dim = int(input_dim)
        self.embed_dim = embed_dim
        self.hyper_w_1 = _hypernet(self.state_dim, embed_dim * n_agents, hypernet_layers,
                                   hypernet_embed)
        self.hyper_w_final = _hypernet(self.state_dim, embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_b_1 = nn.Linear(self.state_dim, embed_dim)
        self.V = nn.Sequential(nn.Linear(self.state_dim, embed_dim), nn.ReLU(),
                               nn.Linear(embed_dim, 1))

    def forward(self, agent_qs, inputs):
        """agent_qs [..., n_agents], inputs [..., input_dim] (or any shape holding that many
        values per row) -> Q_tot [..., 1], for any number of leading dimensions."""
        leading = agent_qs.shape[:-1]
        inputs = inputs.reshape(-1, self.state_dim)  # one contiguous copy for all hypernetworks
        agent_qs = agent_qs.reshape(-1, self.n_agents, 1)
        w1 = self.hyper_w_1(inputs).abs().view(-1, self.n_agents, self.embed_dim)
        hidden = F.elu((agent_qs * w1).sum(dim=1) + self.hyper_b_1(inputs))
        w_final = self.hyper_w_final(inputs).abs()
        q_tot = (hidden * w_final).sum(dim=1, keepdim=True) + self.V(inputs)
        return q_tot.view(*leading, 1)
