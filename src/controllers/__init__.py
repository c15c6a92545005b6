"""Multi-agent controllers, picked by the config key ``mac``; built as
``cls(scheme, groups, args)``."""
from controllers.basic_controller import BasicMAC
from controllers.non_shared_controller import NonSharedMAC

REGISTRY = {
    "basic_mac": BasicMAC,
    "non_shared_mac": NonSharedMAC,
}
