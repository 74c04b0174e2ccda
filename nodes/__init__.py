"""Node registry: each feature module contributes its classes and display names."""
from . import small_checkpoint

_MODULES = [small_checkpoint]
NODE_CLASS_MAPPINGS = {
    "VP2PLoadSmallCheckpoint": small_checkpoint.VP2PLoadSmallCheckpoint,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VP2PLoadSmallCheckpoint": "Load Small SD1.x Checkpoint (VP2P)",
}
