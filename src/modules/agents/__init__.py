"""Agent networks, picked by the config key ``agent``; built as ``cls(input_shape, args)``."""
from modules.agents.rnn_agent import RNNAgent
from modules.agents.rnn_ns_agent import RNNNSAgent
from modules.agents.sale_agent import SALEAgent

REGISTRY = {
    "rnn": RNNAgent,
    "rnn_ns": RNNNSAgent,
    "sale_agent": SALEAgent,
}
