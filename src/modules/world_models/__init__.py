"""World models for model-based learners, picked by the config key ``world_model``; built as
``cls(scheme, args)``."""
from modules.world_models.vae_world_model import VAEWorldModel

REGISTRY = {
    "vae_world_model": VAEWorldModel,
}
