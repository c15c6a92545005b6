"""Neural-network building blocks: agents, mixers, critics and world models, each picked by name
from the ``REGISTRY`` dict of its sub-package. Modules import torch and ``utils`` only."""
