"""The decentralised critic with one network per agent (IA2C_ns, IPPO_ns)."""
from modules.critics.ac import ACCritic


class ACCriticNS(ACCritic):
    shared = False
