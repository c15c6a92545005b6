"""The non-shared MAC: the same controller over an agent module that holds one network per
agent (``agent: rnn_ns``), so no parameters are shared. Inputs, hidden states (agent-major
[B * n_agents, H]) and outputs are laid out as in ``BasicMAC``."""
from controllers.basic_controller import BasicMAC


class NonSharedMAC(BasicMAC):
    """``BasicMAC`` whose agent module keeps separate parameters for each agent."""
