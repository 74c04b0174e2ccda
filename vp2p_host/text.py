"""CLIP and tokenizer access: the token ids the prompt alignment needs, the conditioning the
P2P Controller outputs (CLIP Text Encode's, tagged with its text), and the controller built
from its settings (vp2p_core.prompts.EditSettings) with this CLIP."""
from __future__ import annotations

import functools

from ..vp2p_core import prompts
from .checks import fail

TEXT_KEY = "vp2p_text"   # the prompt text, carried in a CONDITIONING entry's options


def _token_ids(tokenizer):
    inner = getattr(tokenizer, "clip_l", None) or \
        getattr(tokenizer, f"clip_{getattr(tokenizer, 'clip_name', 'l')}", None) or tokenizer
    hf = getattr(inner, "tokenizer", None)
    if hf is None:
        fail("this CLIP has no CLIP BPE tokenizer; use an SD1.x checkpoint's CLIP.")
    return lambda text: hf(text)["input_ids"][1:-1]


def clip_encoder(clip):
    """Token ids without BOS/EOS from the CLIP's own tokenizer (what CLIPTextEncode uses)."""
    return _token_ids(clip.tokenizer)


@functools.lru_cache(maxsize=1)
def sd1_encoder():
    """Token ids of ComfyUI's SD1 tokenizer (shared by every SD1.x CLIP): the editor preview's."""
    import comfy.sd1_clip
    try:
        tok = comfy.sd1_clip.SD1Tokenizer()
    except TypeError:     # newer ComfyUI wants keyword arguments
        tok = comfy.sd1_clip.SD1Tokenizer(embedding_directory=None, tokenizer_data={})
    return _token_ids(tok)


def encode_text(clip, text: str):
    """CLIP Text Encode's CONDITIONING for `text`, tagged with the text itself."""
    tokens = clip.tokenize(text)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[cond, {"pooled_output": pooled, TEXT_KEY: text}]]


def conditioning_text(conditioning) -> str | None:
    """The prompt text a CONDITIONING was encoded from, when the P2P Controller made it."""
    extra = conditioning[0][1] if conditioning and len(conditioning[0]) > 1 else {}
    text = (extra or {}).get(TEXT_KEY)
    return text if isinstance(text, str) else None


def build_control(clip, settings: prompts.EditSettings, previous=None):
    """The P2P Controller: -> (VP2P_CONTROLLER, source CONDITIONING, target CONDITIONING).
    Each prompt is encoded once; the source's embedding reaches the sampler through the inversion."""
    ctrl, map_tokens, label = prompts.build_controller(clip_encoder(clip), settings, previous=previous)
    src = encode_text(clip, settings.source_text)
    tgt = encode_text(clip, settings.target_text)
    spec = prompts.VP2PControl(ctrl, settings.source_text, settings.target_text, tgt[0][0], map_tokens, label)
    return spec, src, tgt
