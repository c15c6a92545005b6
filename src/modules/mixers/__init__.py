"""Mixing networks, picked by the config key ``mixer``; built as ``cls(args)``.

``forward(agent_qs [B, T, n_agents], states [B, T, state_dim]) -> Q_tot [B, T, 1]``.
"""
from modules.mixers.qmix import QMixer
from modules.mixers.vdn import VDNMixer

REGISTRY = {
    "vdn": VDNMixer,
    "qmix": QMixer,
}
