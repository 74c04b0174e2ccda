"""HTTP routes of the pack, registered explicitly by the pack's __init__ (never on import).

POST /vp2p/align: the P2P Controller's live preview in the editor, computed by the same
grammar (vp2p_core.prompts) the node uses, with ComfyUI's SD1 tokenizer (shared by SD1.x CLIPs).
"""
from __future__ import annotations

import logging

from ..vp2p_core import prompts
from .text import sd1_encoder

log = logging.getLogger("video-p2p")
ALIGN = "/vp2p/align"


def align(body: dict) -> dict:
    """The controller preview of the widget values in `body`; bad input comes back as ok=False."""
    return prompts.preview(sd1_encoder(), body)


def register(prompt_server) -> bool:
    """Add the routes to ComfyUI's PromptServer instance (None when ComfyUI runs without a server)."""
    if prompt_server is None:
        return False
    from aiohttp import web

    @prompt_server.routes.post(ALIGN)
    async def vp2p_align(request):
        try:
            body = await request.json()
        except Exception:
            return web.json_response({"ok": False, "error": "expected a JSON body"})
        try:
            return web.json_response(align(body))
        except Exception as e:  # the preview must never break the editor
            log.exception("vp2p align preview failed")
            return web.json_response({"ok": False, "error": str(e)})
    return True


def register_routes() -> bool:
    """The pack's one call: add the routes to the running ComfyUI server, if there is one."""
    try:
        import server
    except ImportError:          # imported outside ComfyUI (tools, tests without a server)
        return False
    return register(getattr(server.PromptServer, "instance", None))
