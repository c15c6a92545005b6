"""Learners, picked by the config key ``learner``; built as ``cls(mac, scheme, logger, args)``."""
from learners.q_learner import QLearner

REGISTRY = {
    "q_learner": QLearner,
}
