"""Grow a toy checkpoint's UNet: a second transformer block at the 8x8 and 4x4 levels, the new
blocks starting as the identity (their attention and feed-forward output projections zero, so the
grown model computes exactly what the file did), saved so that `toy_train.py --words-from` can
train on. A pilot of UNet capacity for two-object scenes (model card, "What limits two objects").

    .venv/bin/python -m vp2p_dev.toy_grow models/toy_world/toy_world_sd1.safetensors grown.safetensors
"""
import copy
import os
import sys

ZERO_INIT = ("attn1.to_out.0.", "attn2.to_out.0.", "ff.net.2.")


def main(src, out):
    src, out = os.path.abspath(src), os.path.abspath(out)       # booting the host changes the directory
    from . import comfy_host
    comfy_host.boot(threads=2)
    from . import devkit as tl
    import torch
    sc = tl.pack().vp2p_host.checkpoint
    cfg = sc.read_config(src)
    model, clip, vae = sc.load_checkpoint(src)
    old = model.model.diffusion_model.state_dict()
    grown_cfg = copy.deepcopy(cfg)
    grown_cfg["unet"]["transformer_depth"] = [2 if d else 0 for d in cfg["unet"]["transformer_depth"]]
    grown_cfg["unet"]["transformer_depth_output"] = [2 if d else 0 for d in cfg["unet"]["transformer_depth_output"]]
    grown = sc.build_model(grown_cfg)
    sd = grown.model.diffusion_model.state_dict()
    new = [k for k in sd if k not in old]
    for k, v in old.items():
        sd[k] = v.to(sd[k].dtype)
    for k in new:
        if any(p in k for p in ZERO_INIT):
            sd[k] = torch.zeros_like(sd[k])
    grown.model.diffusion_model.load_state_dict(sd)
    grown_cfg["toy_world"].setdefault("notes", []).append("grown: a second transformer block per attention "
                                                          "level, identity at the start (-m vp2p_dev.toy_grow)")
    sc.save_checkpoint(out, grown_cfg, grown, clip, vae)
    print(f"{out}: {len(new)} new tensors, {sum(v.numel() for v in sd.values())} UNet parameters "
          f"(was {sum(v.numel() for v in old.values())})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
