"""World models for model-based learners, picked by the config key ``world_model``; built as
``cls(scheme, args)``. This folder, with the files it imports, ships with the SALE-MB plugin."""
from modules.world_models.vae_world_model import VAEWorldModel

REGISTRY = {
    "vae_world_model": VAEWorldModel,
}
