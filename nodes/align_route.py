"""POST /vp2p/align: the P2P Controller's alignment preview for the editor, computed by the
same seq_aligner the node uses (SD1.x CLIPs share one tokenizer)."""
from __future__ import annotations

import functools
import logging

from ..vp2p_core import seq_aligner as sa
from .controller import CUSTOM, parse_scales, parse_words, resolve_preset
from .unet_runner import NodeInputError

NODE_CLASS_MAPPINGS = {}
log = logging.getLogger("video-p2p")


@functools.lru_cache(maxsize=1)
def _encode():
    import comfy.sd1_clip
    try:
        tok = comfy.sd1_clip.SD1Tokenizer()
    except TypeError:     # newer ComfyUI wants keyword arguments
        tok = comfy.sd1_clip.SD1Tokenizer(embedding_directory=None, tokenizer_data={})
    inner = getattr(tok, "clip_l", tok)
    hf = inner.tokenizer
    return lambda w: hf(w)["input_ids"][1:-1]


def align(body: dict) -> dict:
    """describe() of the controller's widget values; bad input comes back as ok=False."""
    if not isinstance(body, dict):
        return {"ok": False, "error": "expected a JSON object"}
    text = lambda key: str(body.get(key) or "")  # noqa: E731
    mode = text("mode") or "swap"
    if mode not in ("swap", "refine", "reweight"):
        return {"ok": False, "error": f"unknown mode {mode!r}"}
    preset = text("preset") or CUSTOM
    label = None
    if preset != CUSTOM:     # what the preset turns the widgets into, by the node's own function
        try:
            v = resolve_preset(preset, text("source"), text("target"), mode, 0.0, 0.0, text("reweight_words"),
                               text("reweight_scales"), text("blend_words"), 0.0, 0.0)
        except NodeInputError as e:
            return {"ok": False, "error": str(e).split(": ", 1)[-1]}
        body = dict(body, reweight_words=v["reweight_words"], reweight_scales=v["reweight_scales"],
                    blend_words=v["blend_words"])
        mode, label = v["mode"], f"{v['base_mode']}+reweight ({preset})"
    try:
        scales = [float(s) for s in parse_words(text("reweight_scales"))]
    except ValueError:
        return {"ok": False, "error": "reweight_scales must be numbers, e.g. '2' or '2, 0.5'"}
    words = parse_words(text("reweight_words"))
    out = sa.describe(_encode(), text("source"), text("target"), mode, words,
                      parse_words(text("blend_words")), scales)
    if mode == "reweight" and out["ok"]:
        try:    # the node's own rule for how many scales go with the words
            parse_scales(text("reweight_scales"), len(words))
        except ValueError as e:
            out.update(ok=False, error=str(e).split(": ", 1)[-1])
    if label is not None:
        out["mode"] = label
    return out


def _register():
    try:
        import server
        from aiohttp import web
    except ImportError:
        return
    instance = getattr(server.PromptServer, "instance", None)
    if instance is None:
        return

    @instance.routes.post("/vp2p/align")
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


_register()
