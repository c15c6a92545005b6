"""Critics for actor-critic learners, picked by the config key ``critic_type`` (EPyMARL's
names, so its configs work unchanged); built as ``cls(scheme, args)`` and called as
``critic(batch) -> [B, T, n_agents, 1]`` (state values) or ``[B, T, n_agents, n_actions]`` (COMA)."""
from modules.critics.ac import ACCritic
from modules.critics.ac_ns import ACCriticNS
from modules.critics.centralv import CentralVCritic
from modules.critics.centralv_ns import CentralVCriticNS
from modules.critics.coma import COMACritic
from modules.critics.coma_ns import COMACriticNS

REGISTRY = {
    "ac_critic": ACCritic,
    "ac_critic_ns": ACCriticNS,
    "cv_critic": CentralVCritic,
    "cv_critic_ns": CentralVCriticNS,
    "coma_critic": COMACritic,
    "coma_critic_ns": COMACriticNS,
}
