"""Learners, picked by the config key ``learner``; built as ``cls(mac, scheme, logger, args)``."""
from learners.q_learner import QLearner
from learners.sale_mb_learner import SALEMBLearner

REGISTRY = {
    "q_learner": QLearner,
    "sale_mb_learner": SALEMBLearner,
}
