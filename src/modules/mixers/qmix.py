"""QMIX: mix the agents' Q-values with a state-conditioned network that is monotonic in each
(``MonotonicMixer`` reading the flat state)."""
from modules.mixers.monotonic_mixer import MonotonicMixer
from utils.td_utils import flat_size


class QMixer(MonotonicMixer):
    def __init__(self, args):
        super().__init__(args.n_agents, flat_size(args.state_shape), args.mixing_embed_dim,
                         args.hypernet_layers, args.hypernet_embed)

    def forward(self, agent_qs, states):
        """agent_qs [B, T, n_agents], states [B, T, *state_shape] -> Q_tot [B, T, 1]."""
        return super().forward(agent_qs, states)
