"""Node registry: every node class of the pack, listed by name, grouped by topic."""
from .edit import VP2PController, VP2PDecoupledSampler
from .inversion import VP2PLoadInversion, VP2PSaveInversion, VP2PSharedNullTextInvert
from .model import VP2PInflateT2SModel, VP2PLoadTuning, VP2PTuneOnVideo
from .toy import VP2PLoadSmallCheckpoint, VP2PToyWorldOracle, VP2PToyWorldVideo
from .video import VP2PLoadVideo, VP2PSaveVideo, VP2PSideBySide

NODE_CLASS_MAPPINGS = {
    "VP2PInflateT2SModel": VP2PInflateT2SModel,
    "VP2PTuneOnVideo": VP2PTuneOnVideo,
    "VP2PLoadTuning": VP2PLoadTuning,
    "VP2PSharedNullTextInvert": VP2PSharedNullTextInvert,
    "VP2PSaveInversion": VP2PSaveInversion,
    "VP2PLoadInversion": VP2PLoadInversion,
    "VP2PController": VP2PController,
    "VP2PDecoupledSampler": VP2PDecoupledSampler,
    "VP2PLoadVideo": VP2PLoadVideo,
    "VP2PSaveVideo": VP2PSaveVideo,
    "VP2PSideBySide": VP2PSideBySide,
    "VP2PLoadSmallCheckpoint": VP2PLoadSmallCheckpoint,
    "VP2PToyWorldVideo": VP2PToyWorldVideo,
    "VP2PToyWorldOracle": VP2PToyWorldOracle,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VP2PInflateT2SModel": "Inflate T2S Model",
    "VP2PTuneOnVideo": "Tune On Video",
    "VP2PLoadTuning": "Load Video Tuning",
    "VP2PSharedNullTextInvert": "Shared Null-Text Invert",
    "VP2PSaveInversion": "Save Inversion (VP2P)",
    "VP2PLoadInversion": "Load Inversion (VP2P)",
    "VP2PController": "P2P Controller",
    "VP2PDecoupledSampler": "Decoupled Sampler",
    "VP2PLoadVideo": "Load Video (VP2P)",
    "VP2PSaveVideo": "Save Video (VP2P)",
    "VP2PSideBySide": "Side By Side (VP2P)",
    "VP2PLoadSmallCheckpoint": "Load Small SD1.x Checkpoint (VP2P)",
    "VP2PToyWorldVideo": "Toy World Video (VP2P)",
    "VP2PToyWorldOracle": "Toy World Oracle (VP2P)",
}
