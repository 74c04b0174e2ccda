"""Random-initialised files of SD1.5's exact architecture, built from ComfyUI's own classes:
a checkpoint (UNet in ComfyUI's SD1.5 config, CLIP-L, the SD KL autoencoder) that core's Load
Checkpoint detects as SD1.5, and a Canny-style ControlNet of SD1.5's architecture. The weights
are noise (seeded, fan-in scaled, fp16 to keep the files small): they exercise the loaders, the
shapes and the memory of a real SD1.5 run, not its pictures.

Built once per cache folder (about 2.9 GB) and reused: `ensure(cache_dir)` (tests/host/test_user_install.py)."""
from __future__ import annotations

import os

import torch

CKPT_NAME = "vp2p_random_sd15.safetensors"
CONTROLNET_NAME = "vp2p_random_sd15_canny.safetensors"
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# the SD KL autoencoder of every SD1.x checkpoint (ComfyUI's default VAE config)
VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def unet_config(dtype=torch.float16):
    """SD1.5's UNet config as ComfyUI detects it from a real v1-5 checkpoint (checked against
    ComfyUI's detection by `check_detection`)."""
    return {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
            "legacy": False, "adm_in_channels": None, "dtype": dtype, "in_channels": 4, "model_channels": 320,
            "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
            "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
            "context_dim": 768, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            "use_temporal_attention": False, "use_temporal_resblock": False}


def _meta(build):
    with torch.device("meta"):
        return build()


def unet_module(device="meta", dtype=torch.float16, operations=None):
    """SD1.5's UNetModel (ComfyUI's class) on `device` (meta: shapes only, no memory)."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as oam
    import comfy.ops
    cfg = dict(unet_config(dtype))
    ops = operations or comfy.ops.disable_weight_init
    with torch.device(device):
        return oam.UNetModel(**cfg, device=device, operations=ops)


def _shapes_unet():
    return {UNET_PREFIX + k: v for k, v in unet_module().state_dict().items()}


def _shapes_clip():
    import comfy.sd1_clip
    import comfy.supported_models
    clip = _meta(lambda: comfy.sd1_clip.SD1ClipModel(device="meta", dtype=torch.float16))
    sd = comfy.supported_models.SD15(dict(unet_config())).process_clip_state_dict_for_saving(clip.state_dict())
    return sd


def _shapes_vae():
    import comfy.ldm.models.autoencoder as ae
    vae = _meta(lambda: ae.AutoencoderKL(ddconfig=VAE_DDCONFIG, embed_dim=4))
    return {VAE_PREFIX + k: v for k, v in vae.state_dict().items()}


def _shapes_controlnet():
    import comfy.cldm.cldm
    import comfy.ops
    cfg = dict(unet_config())
    cfg.pop("out_channels")
    cn = _meta(lambda: comfy.cldm.cldm.ControlNet(**cfg, hint_channels=3, device="meta",
                                                   operations=comfy.ops.disable_weight_init))
    return {"control_model." + k: v for k, v in cn.state_dict().items()}


def random_like(shapes: dict, seed: int) -> dict:
    """Seeded fp16 weights for a {key: meta tensor} dict: fan-in scaled normals for matrices and
    kernels, ~1 for norm scales, small values for biases; integer buffers as ComfyUI sets them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in shapes.items():
        if name.endswith("position_ids"):
            out[name] = torch.arange(t.shape[-1]).expand(t.shape).contiguous()
        elif not t.is_floating_point():
            out[name] = torch.zeros(t.shape, dtype=t.dtype)
        elif t.ndim >= 2:
            out[name] = (torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5).half()
        elif "norm" in name and name.endswith("weight"):
            out[name] = (1.0 + 0.1 * torch.randn(t.shape, generator=g)).half()
        else:
            out[name] = (0.02 * torch.randn(t.shape, generator=g)).half()
    return out


def check_detection(sd_shapes: dict):
    """ComfyUI's own detection must see SD1.5 in these keys and shapes (what Load Checkpoint does)."""
    import comfy.model_detection
    import comfy.supported_models
    mc = comfy.model_detection.model_config_from_unet(sd_shapes, UNET_PREFIX)
    if type(mc) is not comfy.supported_models.SD15:
        raise AssertionError(f"ComfyUI detects {type(mc).__name__}, not SD15")
    return mc


def ensure(cache_dir: str, seed: int = 0) -> dict:
    """Build (once) and return {"checkpoint": path, "controlnet": path} under `cache_dir`."""
    import safetensors.torch
    os.makedirs(cache_dir, exist_ok=True)
    paths = {"checkpoint": os.path.join(cache_dir, CKPT_NAME), "controlnet": os.path.join(cache_dir, CONTROLNET_NAME)}
    if not os.path.exists(paths["checkpoint"]):
        shapes = _shapes_unet()
        check_detection(shapes)
        shapes.update(_shapes_clip())
        shapes.update(_shapes_vae())
        sd = random_like(shapes, seed)
        tmp = paths["checkpoint"] + ".part"
        safetensors.torch.save_file(sd, tmp, metadata={"vp2p": "random-initialised SD1.5 architecture (tests)"})
        del sd
        os.replace(tmp, paths["checkpoint"])
    if not os.path.exists(paths["controlnet"]):
        sd = random_like(_shapes_controlnet(), seed + 1)
        tmp = paths["controlnet"] + ".part"
        safetensors.torch.save_file(sd, tmp, metadata={"vp2p": "random-initialised SD1.5 ControlNet (tests)"})
        del sd
        os.replace(tmp, paths["controlnet"])
    return paths
