"""The centralised state-value critic with one network per agent (MAA2C_ns, MAPPO_ns)."""
from modules.critics.centralv import CentralVCritic


class CentralVCriticNS(CentralVCritic):
    shared = False
