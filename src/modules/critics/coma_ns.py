"""COMA's counterfactual critic with one network per agent (COMA_ns)."""
from modules.critics.coma import COMACritic


class COMACriticNS(COMACritic):
    shared = False
