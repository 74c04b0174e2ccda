"""ComfyUI Video-P2P: text-driven video editing with cross-attention control (CVPR 2024).

Three floors: vp2p_core (the method, pure torch) <- vp2p_host (ComfyUI plumbing) <- nodes
(node classes only). This file is the registry ComfyUI reads."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes import routes as _routes


def _register_routes():
    try:
        import server
    except ImportError:          # imported outside ComfyUI (tools, tests without a server)
        return
    _routes.register(getattr(server.PromptServer, "instance", None))


_register_routes()

WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
