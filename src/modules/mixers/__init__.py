"""Mixing networks, picked by the config key ``mixer``; built as ``cls(args)``.

``forward(agent_qs [B, T, n_agents], states [B, T, state_dim]) -> Q_tot [B, T, 1]``
(``qmix_sale`` reads its context c = [state, SALE, foresight] in place of the state).
"""
from modules.mixers.qmix import QMixer
from modules.mixers.qmix_sale import QMixSALE
from modules.mixers.vdn import VDNMixer

REGISTRY = {
    "vdn": VDNMixer,
    "qmix": QMixer,
    "qmix_sale": QMixSALE,
}
