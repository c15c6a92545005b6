"""Learners, picked by the config key ``learner``; built as ``cls(mac, scheme, logger, args)``.

``actor_critic_learner`` and ``ppo_learner`` (EPyMARL's two names) are one learner: A2C is its
single-epoch case."""
from learners.actor_critic_learner import ActorCriticLearner
from learners.coma_learner import COMALearner
from learners.q_learner import QLearner
from learners.sale_mb_learner import SALEMBLearner

REGISTRY = {
    "q_learner": QLearner,
    "sale_mb_learner": SALEMBLearner,
    "actor_critic_learner": ActorCriticLearner,
    "ppo_learner": ActorCriticLearner,
    "coma_learner": COMALearner,
}
