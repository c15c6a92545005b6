"""Critics for actor-critic learners, picked by the config key ``critic_type``."""
REGISTRY = {}
