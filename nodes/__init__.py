"""Node registry: every node class of the pack, listed by name, grouped by topic. The pack's
__init__ hands this list to ComfyUI (its V3 entry point); each class's schema carries its node
id and display name."""
from .edit import VP2PController, VP2PDecoupledGuider, VP2PDecoupledSampler
from .inversion import VP2PLoadInversion, VP2PSaveInversion, VP2PSharedNullTextInvert
from .model import VP2PInflateT2SModel, VP2PLoadTuning, VP2PTuneOnVideo
from .toy import VP2PLoadSmallCheckpoint, VP2PToyWorldOracle, VP2PToyWorldVideo
from .video import VP2PLoadVideo, VP2PSaveVideo, VP2PSideBySide

NODES = (
    VP2PInflateT2SModel,
    VP2PTuneOnVideo,
    VP2PLoadTuning,
    VP2PSharedNullTextInvert,
    VP2PSaveInversion,
    VP2PLoadInversion,
    VP2PController,
    VP2PDecoupledSampler,
    VP2PDecoupledGuider,
    VP2PLoadVideo,
    VP2PSaveVideo,
    VP2PSideBySide,
    VP2PLoadSmallCheckpoint,
    VP2PToyWorldVideo,
    VP2PToyWorldOracle,
)
