"""World models for model-based learners, picked by name from ``REGISTRY``."""
REGISTRY = {}
