"""Small SD1.x-architecture checkpoints (any width) built from ComfyUI's own classes.

ComfyUI's checkpoint detection only accepts SD1.5 at full width (320 channels, 768 context),
so the toy-world model and the test models carry their architecture in the safetensors
metadata and load through this node. Everything else about them is stock ComfyUI: the
UNet (with SpatialTransformer cross-attention), the CLIP text model with the real CLIP BPE
tokenizer, the TAESD autoencoder, the EPS objective and the SD1 noise schedule.
"""
from __future__ import annotations

import json
import os
import tempfile

import torch
import safetensors.torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
import comfy.latent_formats
import comfy.taesd.taesd
import folder_paths

from .checks import MissingFileError, fail

CONFIG_KEY = "vp2p_small_sd"
# The pack's own model folder kind: core's Load Checkpoint never lists these files (it cannot
# load them), only this pack's loader does. models/vp2p_toy/ of ComfyUI (or a `vp2p_toy:` entry
# in extra_model_paths.yaml) for the user's files, plus the toy model shipped in this repository.
MODEL_KIND = "vp2p_toy"
TOY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "toy_world")


def register_model_folder():
    """Register MODEL_KIND with ComfyUI's folder_paths (idempotent; keeps paths that
    extra_model_paths.yaml added under the same key)."""
    paths, exts = folder_paths.folder_names_and_paths.get(MODEL_KIND, ([], set()))
    for p in (os.path.join(folder_paths.models_dir, MODEL_KIND), TOY_DIR):
        if p not in paths:
            paths.append(p)
    exts = set(exts) | {".safetensors"}
    folder_paths.folder_names_and_paths[MODEL_KIND] = (paths, exts)


register_model_folder()
UNET_PREFIX = "model.diffusion_model."
CLIP_PREFIX = "cond_stage_model."
VAE_PREFIX = "first_stage_model."


def unet_config(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, context_dim=64,
                num_head_channels=16, attention_levels=None, in_channels=4):
    """A UNet config in ComfyUI's format (per-block transformer depths, SD1.x style)."""
    levels = len(channel_mult)
    attention_levels = list(range(levels)) if attention_levels is None else list(attention_levels)
    depth_in, depth_out = [], []
    for lvl in range(levels):
        d = 1 if lvl in attention_levels else 0
        depth_in += [d] * num_res_blocks
        depth_out += [d] * (num_res_blocks + 1)
    return {
        "use_checkpoint": False, "image_size": 32, "in_channels": in_channels, "out_channels": 4,
        "model_channels": model_channels, "num_res_blocks": [num_res_blocks] * levels,
        "transformer_depth": depth_in, "transformer_depth_output": depth_out,
        "transformer_depth_middle": 1, "channel_mult": list(channel_mult),
        "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None,
        "use_linear_in_transformer": False, "context_dim": context_dim,
        "num_heads": -1, "num_head_channels": num_head_channels,
        "use_temporal_attention": False, "use_temporal_resblock": False,
    }


def clip_config(hidden=64, layers=2, heads=2, intermediate=None):
    """A CLIPTextModel config for ComfyUI's SD1 text encoder at reduced width."""
    return {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
        "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": hidden,
        "initializer_factor": 1.0, "initializer_range": 0.02,
        "intermediate_size": intermediate or 4 * hidden, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model",
        "num_attention_heads": heads, "num_hidden_layers": layers, "pad_token_id": 1,
        "projection_dim": hidden, "torch_dtype": "float32", "vocab_size": 49408,
    }


class _SmallLatentFormat(comfy.latent_formats.LatentFormat):
    def __init__(self, scale_factor=1.0):
        self.scale_factor = scale_factor


def _model_config(cfg):
    ucfg = dict(cfg["unet"])

    class SmallSD1(comfy.supported_models_base.BASE):
        unet_config = {}
        unet_extra_config = {}
        latent_format = _SmallLatentFormat
        supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]

        def __init__(self, unet_config):
            super().__init__(unet_config)
            self.latent_format = _SmallLatentFormat(cfg.get("latent_scale", 1.0))

    mc = SmallSD1(ucfg)
    return mc


def _set_dtype(mc, unet_dtype, manual_cast):
    if hasattr(mc, "set_inference_dtype"):
        mc.set_inference_dtype(unet_dtype, manual_cast)
    else:  # older ComfyUI
        mc.unet_config["dtype"] = unet_dtype
        mc.manual_cast_dtype = manual_cast


def build_model(cfg, unet_sd=None):
    """ComfyUI MODEL (ModelPatcher) for a small SD1.x UNet; random weights when unet_sd is None."""
    mc = _model_config(cfg)
    load_device = mm.get_torch_device()
    unet_dtype = mm.unet_dtype(supported_dtypes=mc.supported_inference_dtypes) if "supported_dtypes" in \
        mm.unet_dtype.__code__.co_varnames else mm.unet_dtype()
    manual_cast = mm.unet_manual_cast(unet_dtype, load_device, mc.supported_inference_dtypes) \
        if hasattr(mm, "unet_manual_cast") else None
    _set_dtype(mc, unet_dtype, manual_cast)
    model = mc.get_model({}, UNET_PREFIX, device=mm.unet_offload_device())
    if unet_sd is None:
        unet_sd = random_state_dict(model.diffusion_model, cfg.get("seed", 0))
    missing, unexpected = model.diffusion_model.load_state_dict(unet_sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"UNet weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device,
                                            offload_device=mm.unet_offload_device())


def build_clip(cfg, clip_sd=None):
    """ComfyUI CLIP at reduced width with the real SD1 tokenizer."""
    ccfg = cfg["clip"]
    fd, path = tempfile.mkstemp(suffix=".json", prefix="vp2p_clip_")
    with os.fdopen(fd, "w") as f:
        json.dump(ccfg, f)
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    # SD1ClipModel forwards these to its text model (the checkpoint flavour takes no config)
    target.params = {"clip_model": comfy.sd1_clip.SDClipModel, "textmodel_json_config": path,
                     "return_projected_pooled": False}
    if cfg.get("text_only_words"):
        # Only the start token and the words reach the UNet: the end token and the padding
        # (which a causal text model fills with the whole caption) come out as zeros, so a
        # word's meaning is found at the word and its cross-attention map shows where it is.
        target.params.update(special_tokens={"start": 49406, "pad": 49407}, zero_out_masked=True)
    with torch.no_grad():
        clip = comfy.sd.CLIP(target)
    os.unlink(path)
    if clip_sd is None:
        with torch.no_grad():
            clip_sd = random_state_dict(clip.cond_stage_model, cfg.get("seed", 0) + 1)
        clip.cond_stage_model.load_state_dict(clip_sd, strict=False)
    else:
        clip.load_sd(clip_sd, full_model=True)
    return clip


def build_vae(cfg, vae_sd=None):
    if vae_sd is None:
        vae_sd = random_state_dict(comfy.taesd.taesd.TAESD(), cfg.get("seed", 0) + 2)
    return comfy.sd.VAE(sd=vae_sd)


def random_state_dict(module, seed):
    """Seeded init (ComfyUI layers are created with torch.empty): fan-in scaled normals."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, t in module.state_dict().items():
        if not t.is_floating_point():
            sd[name] = t
            continue
        if name.endswith("position_ids"):
            sd[name] = t
        elif t.ndim >= 2:
            fan_in = t[0].numel()
            sd[name] = torch.randn(t.shape, generator=g) / fan_in ** 0.5
        elif "norm" in name and name.endswith("weight"):
            sd[name] = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
        elif name.endswith("vae_scale"):
            sd[name] = torch.ones(t.shape)
        else:
            sd[name] = 0.1 * torch.randn(t.shape, generator=g)
    return sd


def save_checkpoint(path, cfg, model, clip, vae, dtype=torch.float16):
    sd = {}
    for k, v in model.model.diffusion_model.state_dict().items():
        sd[UNET_PREFIX + k] = v
    for k, v in clip.cond_stage_model.state_dict().items():
        sd[CLIP_PREFIX + k] = v
    for k, v in vae.first_stage_model.state_dict().items():
        sd[VAE_PREFIX + k] = v
    sd = {k: (v.to(dtype) if v.is_floating_point() and not k.endswith("position_ids") else v).contiguous()
          for k, v in sd.items()}
    safetensors.torch.save_file(sd, path, metadata={CONFIG_KEY: json.dumps(cfg)})


def read_config(path):
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_KEY not in meta:
        fail(f"'{os.path.basename(path)}' has no '{CONFIG_KEY}' metadata; use ComfyUI's Load Checkpoint for "
             "regular SD1.5 files.")
    return json.loads(meta[CONFIG_KEY])


def load_checkpoint(path, cfg=None):
    """(MODEL, CLIP, VAE); `cfg` replaces the file's config (training changes the text path)."""
    if not os.path.isfile(path):
        raise MissingFileError(f"no file '{path}'")
    cfg = read_config(path) if cfg is None else cfg
    sd = safetensors.torch.load_file(path)

    def part(prefix):
        return {k[len(prefix):]: v.float() if v.is_floating_point() else v
                for k, v in sd.items() if k.startswith(prefix)}
    clip_sd = part(CLIP_PREFIX)
    if "transformer.text_model.embeddings.position_ids" in clip_sd:
        clip_sd["transformer.text_model.embeddings.position_ids"] = \
            clip_sd["transformer.text_model.embeddings.position_ids"].round().long()
    model = build_model(cfg, part(UNET_PREFIX))
    clip = build_clip(cfg, clip_sd)
    vae = build_vae(cfg, part(VAE_PREFIX))
    return model, clip, vae


def list_small_checkpoints():
    return folder_paths.get_filename_list(MODEL_KIND)


def full_path(name):
    return folder_paths.get_full_path(MODEL_KIND, name)


def load_by_name(ckpt_name):
    """(MODEL, CLIP, VAE) of a file in the pack's model folder kind."""
    path = full_path(ckpt_name)
    if path is None:
        raise MissingFileError(f"'{ckpt_name}' is not in models/{MODEL_KIND}/: put the file there (or add a "
                               "'vp2p_toy:' folder in extra_model_paths.yaml) and refresh.")
    return load_checkpoint(path)
