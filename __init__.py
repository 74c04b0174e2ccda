"""ComfyUI Video-P2P: text-driven video editing with cross-attention control (CVPR 2024).

Three floors: vp2p_core (the method, pure torch) <- vp2p_host (ComfyUI plumbing) <- nodes
(node classes only). This file is what ComfyUI's custom-node loader reads: the V3 entry point
`comfy_entrypoint` (the loader uses it only when the module has no NODE_CLASS_MAPPINGS, so
there is none here), the editor's WEB_DIRECTORY, and the /vp2p/align route, registered here."""
from comfy_api.v0_0_2 import ComfyExtension

from .nodes import NODES
from .vp2p_host.routes import register_routes


class VideoP2PExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> VideoP2PExtension:
    return VideoP2PExtension()


register_routes()

WEB_DIRECTORY = "./web"
__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
