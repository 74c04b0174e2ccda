"""Train the toy-world model from scratch (seeded, CPU): a TAESD autoencoder, a CLIP text
model with the real CLIP tokenizer, and an SD1.x-architecture UNet (ComfyUI's own classes) with
epsilon prediction on the SD1 schedule and ~10% empty captions.

Model v3 (the shipped one, 148.8 min): every part from scratch. The autoencoder (--scratch) on
one- and two-object images, half with turned objects, with an object-weighted L1, and a
decoder-only round; on it v1's route (--global-from: a fresh UNet under a frozen random text
encoder, on one upright object per image: on mixed data it had not learnt shapes in 4,200 steps),
resumed for a fourth round; then stage 'words' (--words-from: the text encoder's end token and
padding zeroed, text encoder + UNet trained on one- and two-object images with an attention loss
on the object words) in two rounds. Model v2 continued from v1: stage 'words', then a
decoder-only round on one- and two-object images with turned objects. v1: joint autoencoder ->
UNet rounds on its (fixed) latents (text encoder frozen at a seeded random init) -> decoder-only
rounds. The chains that were tried and not shipped (stage 'words' from random weights; a first
candidate with fewer one-object steps; two-object images in the global route) are below the v3
commands. Measurements:
models/toy_world/MODEL_CARD.md ("How v3 was found").

    # v3 (shipped): autoencoder + decoder round (27.6 min), v1's route on it, then the words
    .venv/bin/python -m vp2p_dev.toy_train --scratch --vae-steps 2000 --words-steps 0 \
        --decoder-rounds 1500:2e-4 --out v3a.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --global-from v3a.safetensors --two-share 0 --turn-share 0 \
        --unet-rounds 2400:8e-4,1000:2e-4,800:1e-4 --out v3o.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --resume v3o.safetensors --unet-rounds 2600:4e-4 \
        --decoder-rounds '' --out v3g.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --words-from v3g.safetensors --words-steps 2700 \
        --eps-obj-weight 2 --turn-share 0.25 --out v3w.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --words-from v3w.safetensors --words-steps 850 --words-images 12000 \
        --words-lr 2.5e-4 --two-share 0.5 --eps-obj-weight 2 --turn-share 0.25 --seed 1 \
        --out models/toy_world/toy_world_sd1.safetensors
    # v1 and v2
    .venv/bin/python -m vp2p_dev.toy_train --out v1.safetensors                  # v1 (81 min)
    .venv/bin/python -m vp2p_dev.toy_train --words-from v1.safetensors --out words.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --resume words.safetensors --unet-rounds '' \
        --decoder-rounds 1500:2e-4 --mixed-data --images 12000 \
        --out models/toy_world/toy_world_sd1.safetensors                        # v2
    .venv/bin/python -m vp2p_dev.toy_train --words-continue --out words.safetensors   # after an interruption
    # not shipped: stage 'words' from random weights on v3's autoencoder
    .venv/bin/python -m vp2p_dev.toy_train --scratch --vae-steps 2000 --words-steps 5000 \
        --words-lr 6e-4 --eps-obj-weight 2 --decoder-rounds 1500:2e-4 --out v3s.safetensors
    # not shipped: the first candidate (145.8 min), from v3o with fewer one-object steps
    .venv/bin/python -m vp2p_dev.toy_train --words-from v3o.safetensors --words-steps 3800 \
        --eps-obj-weight 2 --turn-share 0.25 --out c1w.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --words-from c1w.safetensors --words-steps 1000 --words-lr 2.5e-4 \
        --two-share 0.5 --eps-obj-weight 2 --turn-share 0.25 --seed 1 --out c1.safetensors
    # not shipped: a fourth chain (142.1 min), two-object images in the global route's last round
    .venv/bin/python -m vp2p_dev.toy_train --resume v3o.safetensors --mixed-data --two-share 0.5 \
        --turn-share 0 --unet-rounds 2400:4e-4 --decoder-rounds '' --out c3g.safetensors
    (then the two stage 'words' commands of v3 from c3g.safetensors)
    # not shipped: v3's last round with 80% two objects (147.3 min), and v3 + such a round (162.5 min)
    .venv/bin/python -m vp2p_dev.toy_train --words-from v3w.safetensors --words-steps 850 --words-images 12000 \
        --words-lr 2.5e-4 --two-share 0.8 --eps-obj-weight 2 --turn-share 0.25 --seed 1 --out c5.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --words-from models/toy_world/toy_world_sd1.safetensors \
        --words-steps 850 --words-images 12000 --words-lr 2.5e-4 --two-share 0.8 --eps-obj-weight 2 \
        --turn-share 0.25 --seed 2 --out p1.safetensors
    (and the same round on `-m vp2p_dev.toy_grow models/toy_world/toy_world_sd1.safetensors grown.safetensors`:
    --words-from grown.safetensors, 166.6 min; or p1's round with --eps-obj-weight 6, or with --min-snr 5)
    # not shipped: a UNet 1.5x as wide on v3's autoencoder, v3's split of the budget (149.8 min)
    .venv/bin/python -m vp2p_dev.toy_train --global-from models/toy_world/toy_world_sd1.safetensors \
        --two-share 0 --turn-share 0 --unet-channels 96 --unet-rounds 1300:8e-4 --out w96.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --resume w96.safetensors --unet-rounds 1700:4e-4 \
        --decoder-rounds '' --out w96r.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --words-from w96r.safetensors --words-steps 1650 \
        --eps-obj-weight 2 --turn-share 0.25 --out w96w.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --words-from w96w.safetensors --words-steps 339 --words-images 8000 \
        --words-lr 2.5e-4 --two-share 0.5 --eps-obj-weight 2 --turn-share 0.25 --seed 1 --out w96f.safetensors
    .venv/bin/python -m vp2p_dev.toy_train --scratch --words-images 2000 --vae-steps 50 \
        --words-steps 50 --decoder-rounds 20:3e-4 --out t.safetensors            # smoke run

Writes the checkpoint (fp16, config and minutes per stage in the safetensors metadata) and
prints progress. Needs only the host installed by scripts/setup_host.sh.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

UNET = dict(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1, context_dim=128,
            num_head_channels=16, attention_levels=[0, 1])
CLIP = dict(hidden=128, layers=2, heads=2)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dataset(n, seed, size, two_share=None, turn_share=0.0):
    """The seeded images every stage trains on: one upright object per image (`two_share` None:
    v1's data, no draw per image), else two objects with probability `two_share`, each image's
    objects turned with probability `turn_share`. -> images, captions, each object's coverage at
    latent resolution [n, 2, size/8, size/8], the token positions of each object's colour and shape
    words [n, 2, 2] (-1: none) and the objects' pixel masks [n, size, size] (uint8)."""
    import cv2
    import numpy as np
    from vp2p_toy import world
    rng = np.random.default_rng(seed)
    lat = size // 8
    imgs = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, 2, lat, lat), np.float32)
    words = np.full((n, 2, 2), -1, np.int64)
    pix = np.zeros((n, size, size), np.uint8)
    caps = []
    for i in range(n):
        objects = 1 if two_share is None else 2 if rng.random() < two_share else 1
        spec = world.random_spec(rng, frames=1, size=size, motion=False, objects=objects)
        f, truth = world.render(maybe_turned(spec, rng, turn_share))
        imgs[i] = f[0]
        caps.append(spec.caption)
        for o, obj in enumerate(truth["objects"]):
            masks[i, o] = cv2.resize(obj["masks"][0], (lat, lat), interpolation=cv2.INTER_AREA)
            pix[i] |= (obj["masks"][0] > 0.5).astype(np.uint8)
            first = 1 + 4 * o                         # "a red square and a blue circle ...": words 1-2, 5-6
            words[i, o] = (first + 1, first + 2)      # + 1 for the start token
    return imgs, caps, masks, words, pix


def maybe_turned(spec, rng, share):
    """With probability `share`, each object turned by its own angle up to 120 degrees."""
    import dataclasses
    if not share or rng.random() >= share:
        return spec
    a0, a1 = rng.uniform(0, 120, 2)
    spec = dataclasses.replace(spec, rotation=(a0, a0))
    if spec.second is not None:
        spec.second = dataclasses.replace(spec.second, rotation=(a1, a1))
    return spec


def init_conv(module, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()


def to_pixels(imgs_u8, idx):
    import torch
    x = torch.from_numpy(imgs_u8[idx]).float().div(255.0)
    return x.permute(0, 3, 1, 2).mul(2).sub(1)          # [-1, 1], NCHW


def warmup_cosine(opt, steps, warmup=0.05):
    import torch
    w = max(1, int(steps * warmup))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / w) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))))


def train_vae(imgs, steps, batch, lr, seed, obj_masks=None, obj_weight=0.0):
    """`obj_masks` [n, H, W] (uint8) weights the L1 by 1 + obj_weight inside the objects: small
    objects are a few percent of a frame, and a frame-wide L1 lets the encoder round them."""
    import numpy as np
    import torch
    import comfy.taesd.taesd as taesd
    torch.manual_seed(seed)
    vae = taesd.TAESD()
    init_conv(vae, seed)
    # residual branches start at zero (no normalisation layers: keeps activations bounded at
    # init), and the decoder's last conv small so early outputs are grey, not saturated
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, taesd.Block):
                m.conv[-1].weight.zero_()
        vae.taesd_decoder[-1].weight.mul_(0.1)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = warmup_cosine(opt, steps)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(imgs), batch)
        x = to_pixels(imgs, idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = vae.taesd_encoder(x * 0.5 + 0.5)
            y = vae.taesd_decoder(z).sub(0.5).mul(2)
        loss = pixel_l1(y, x, obj_masks, idx, obj_weight) + 1e-4 * z.float().pow(2).mean()
        autoencoder_step("vae", step, steps, opt, sched, loss, y, x, t0)
    return vae


def pixel_l1(y, x, obj_masks, idx, obj_weight):
    import torch
    err = (y.float() - x).abs()
    if obj_masks is None or not obj_weight:
        return err.mean()
    w = 1 + obj_weight * torch.from_numpy(obj_masks[idx]).float()[:, None]
    return (err * w).mean() / w.mean()


def autoencoder_step(name, step, steps, opt, sched, loss, y, x, t0):
    """One optimiser step of an autoencoder stage, with a progress line every 100 steps."""
    import torch
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    if step % 100 == 0 or step == steps - 1:
        with torch.no_grad():
            psnr = -10 * math.log10(float((y.float() - x).pow(2).mean() / 4))
        el = time.time() - t0
        log(f"{name} {step + 1}/{steps} L1 {loss.item():.4f} PSNR {psnr:.1f} dB  ({el:.0f} s, "
            f"eta {el / (step + 1) * (steps - step - 1):.0f} s)")


def refine_decoder(vae, imgs, z_all, steps, batch, lr, seed, noise=0.05, obj_masks=None, obj_weight=0.0):
    """Decoder-only training on the frozen encoder's latents. The joint stage is short and
    leaves the decoder rounding corners (triangles and squares come back as blobs); training
    the decoder alone sharpens them without moving the latent space the UNet learned, so it
    can also be applied to a finished checkpoint. Small latent noise makes it forgiving of
    sampled (slightly off-manifold) latents."""
    import numpy as np
    import torch
    torch.manual_seed(seed)
    scale = float(z_all.std())
    dec = vae.taesd_decoder
    for p in vae.parameters():
        p.requires_grad_(False)
    params = list(dec.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = warmup_cosine(opt, steps)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(imgs), batch)
        x = to_pixels(imgs, idx)
        z = z_all[torch.from_numpy(idx)]
        z = z + noise * scale * torch.randn(z.shape, generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = dec(z).sub(0.5).mul(2)
        loss = pixel_l1(y, x, obj_masks, idx, obj_weight)
        autoencoder_step("decoder", step, steps, opt, sched, loss, y, x, t0)
    for p in params:
        p.requires_grad_(False)
    return vae


def encode_all(vae, imgs, batch=256):
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(imgs), batch):
            x = to_pixels(imgs, slice(i, i + batch))
            out.append(vae.taesd_encoder(x * 0.5 + 0.5))
    return torch.cat(out).float()


def ema_step(loss, opt, sched, params, ema, step):
    """One clipped optimiser step and the EMA update (warming up towards 0.999)."""
    import torch
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    decay = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema, params):
            e.lerp_(p.detach(), 1 - decay)


def train_unet(diffusion_model, latents, caps, embed, steps, batch, lr, seed, drop=0.1):
    """eps-prediction on the SD1 schedule (the VP form of ComfyUI's EPS sampling), bf16 autocast,
    EMA of the weights."""
    import numpy as np
    import torch
    from . import devkit as tl
    autograd_safe = tl.host.grad.autograd_safe
    from vp2p_core.schedule import sd1_sigmas
    sig = sd1_sigmas().float()
    abar = 1.0 / (1.0 + sig ** 2)                       # alphas_cumprod
    dm = diffusion_model
    dm.train()
    params = [p for p in dm.parameters()]
    for p in params:
        p.requires_grad_(True)
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = warmup_cosine(opt, steps)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    empty = embed[""]
    table = torch.stack([embed[c] for c in caps])        # [N, 77, C]
    t0 = time.time()
    avg = None
    with autograd_safe(dm):
        for step in range(steps):
            idx = torch.from_numpy(rng.integers(0, len(latents), batch))
            x0 = latents[idx]
            ctx = table[idx].clone()
            keep = torch.rand(batch, generator=g) >= drop
            ctx[~keep] = empty
            t = torch.randint(0, 1000, (batch,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            a = abar[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = dm(xt, t.float(), context=ctx)
            loss = (pred.float() - eps).pow(2).mean()
            ema_step(loss, opt, sched, params, ema, step)
            avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
            if step % 50 == 0 or step == steps - 1:
                el = time.time() - t0
                log(f"unet {step + 1}/{steps} loss {avg:.4f}  ({el:.0f} s, eta {el / (step + 1) * (steps - step - 1):.0f} s)")
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
            p.requires_grad_(False)
    dm.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "models", "toy_world", "toy_world_sd1.safetensors"))
    ap.add_argument("--images", type=int, default=24000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--vae-steps", type=int, default=1400)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--unet-rounds", default="3600:8e-4,2000:2e-4,2000:1e-4",
                    help="UNet training rounds STEPS:PEAK_LR,... (each its own warm-up + cosine cycle)")
    ap.add_argument("--unet-batch", type=int, default=128)
    ap.add_argument("--decoder-rounds", default="1500:3e-4,2000:2e-4",
                    help="decoder-only rounds STEPS:PEAK_LR,... on the frozen encoder's latents")
    ap.add_argument("--decoder-batch", type=int, default=32)
    ap.add_argument("--resume", metavar="CKPT",
                    help="start from a finished checkpoint instead of from scratch: only the given "
                         "--unet-rounds / --decoder-rounds run (pass '' to skip one); every other "
                         "tensor is written back unchanged")
    ap.add_argument("--mixed-data", action="store_true",
                    help="data of the autoencoder / --resume stages: one- and two-object images (--two-share, "
                         "default 0.5; --turn-share, default 0.5) (default: the v1 data, one upright object)")
    ap.add_argument("--words-from", metavar="CKPT",
                    help="stage 'words' from this finished checkpoint (a v1 file: model v2; a v3 file: "
                         "one more round)")
    ap.add_argument("--words-continue", action="store_true",
                    help="continue an interrupted 'words' stage from OUT and OUT.state.pt")
    ap.add_argument("--words-images", type=int, default=24000)
    ap.add_argument("--two-share", type=float, default=None,
                    help="share of two-object images (stages words / scratch / global: default 0.6; --mixed-data: 0.5)")
    ap.add_argument("--words-steps", type=int, default=3000)
    ap.add_argument("--words-lr", type=float, default=4e-4)
    ap.add_argument("--text-lr-ratio", type=float, default=1.0)
    ap.add_argument("--attn-weight", type=float, default=5.0)
    ap.add_argument("--attn-share", type=float, default=0.6,
                    help="attention a pixel inside an object should give that object's colour + shape words")
    ap.add_argument("--attn-tmax", type=int, default=1000, help="attention loss only at timesteps below this")
    ap.add_argument("--scratch", action="store_true",
                    help="model v3: autoencoder, text encoder and UNet from scratch on one- and two-object "
                         "images (half turned), the words stage's loss from the start; with --words-continue "
                         "after an interruption")
    ap.add_argument("--global-from", metavar="CKPT",
                    help="model v3, v1's route: a fresh UNet under a frozen random text encoder (captions "
                         "through the padding) on the autoencoder of this v3 checkpoint; then stage 'words' "
                         "with --words-from")
    ap.add_argument("--unet-channels", type=int, default=None,
                    help="--global-from: the fresh UNet's model_channels (default: the source file's, 64)")
    ap.add_argument("--turn-share", type=float, default=None,
                    help="share of images with turned objects (default: --scratch 0.5, else the source's)")
    ap.add_argument("--ae-obj-weight", type=float, default=4.0, help="--scratch: autoencoder L1 weight inside objects (+)")
    ap.add_argument("--eps-obj-weight", type=float, default=0.0, help="eps-MSE weight on object cells (+)")
    ap.add_argument("--min-snr", type=float, default=0.0,
                    help="stage 'words': weight each sample's eps-MSE by min(SNR, GAMMA) / SNR (Min-SNR-gamma; "
                         "0: off), which spends less of the gradient on the nearly clean timesteps")
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)           # booting ComfyUI changes the working directory
    for name in ("resume", "words_from", "global_from"):           # relative to where the script was started
        if getattr(a, name):
            setattr(a, name, os.path.abspath(getattr(a, name)))
    a.unet_rounds, a.decoder_rounds = parse_rounds(a.unet_rounds), parse_rounds(a.decoder_rounds)
    # --mixed-data (--resume's data) defaults to half two objects, half turned; the stages to 0.6
    a.mixed = (0.5 if a.two_share is None else a.two_share, 0.5 if a.turn_share is None else a.turn_share)
    a.two_share = 0.6 if a.two_share is None else a.two_share
    import torch
    from . import comfy_host
    from . import devkit as tl
    comfy_host.boot(threads=a.threads)
    sc = tl.host.checkpoint
    import comfy.sd
    if a.scratch:
        a.turn_share = 0.5 if a.turn_share is None else a.turn_share
        return scratch_stage(a, sc)
    if a.global_from:
        return global_stage(a, sc)
    if a.words_from or a.words_continue:
        a.words_from = os.path.abspath(a.words_from or a.out)
        return words_stage(a, sc)
    times = {}
    t = time.time()
    if a.mixed_data:
        imgs, caps = dataset(a.images, a.seed + 11, a.size, *a.mixed)[:2]
    else:
        imgs, caps = dataset(a.images, a.seed, a.size)[:2]
    times["data"] = time.time() - t
    log(f"{len(imgs)} images {a.size}x{a.size}, {len(set(caps))} captions ({times['data']:.0f} s)")
    if a.resume:
        return resume(a, sc, imgs, caps, times)
    t = time.time()
    vae = train_vae(imgs, a.vae_steps, a.vae_batch, 2e-3, a.seed + 1)
    times["vae"] = time.time() - t
    t = time.time()
    z = encode_all(vae, imgs)
    times["encode"] = time.time() - t
    std = float(z.std())
    with torch.no_grad():
        vae.vae_scale.fill_(std)        # encode() divides by it: unit-variance latents for the UNet
    latents = (z / std).float()
    log(f"latents {tuple(latents.shape[1:])}, raw std {std:.3f}")
    cfg = {"unet": sc.unet_config(**UNET), "clip": sc.clip_config(**CLIP), "latent_scale": 1.0, "seed": a.seed,
           "toy_world": {"size": a.size, "images": a.images, "vae_steps": a.vae_steps, "unet_batch": a.unet_batch}}
    clip = sc.build_clip(cfg)                                  # seeded random, frozen
    model = sc.build_model(cfg)
    times.update(train_stages(a, cfg, model, clip, vae, imgs, caps, z, latents))
    vae_obj = comfy.sd.VAE(sd={k: v for k, v in vae.state_dict().items()})
    cfg["toy_world"]["minutes"] = {k: round(v / 60, 2) for k, v in times.items()}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    sc.save_checkpoint(a.out, cfg, model, clip, vae_obj)
    log(f"saved {a.out} ({os.path.getsize(a.out) / 2 ** 20:.1f} MiB); minutes {json.dumps(cfg['toy_world']['minutes'])}")


def parse_rounds(text):
    return [(int(st), float(lr)) for st, lr in (r.split(":") for r in text.split(",") if r.strip())]


def caption_embeddings(clip, caps):
    import torch
    embed = {}
    with torch.no_grad():
        for c in sorted(set(caps)) + [""]:
            embed[c] = clip.encode_from_tokens(clip.tokenize(c))[0].float()   # [77, C]
    return embed


def train_stages(a, cfg, model, clip, vae, imgs, caps, z, latents):
    """The UNet rounds, then the decoder rounds (the decoder never changes the latents the UNet
    learned). Records the rounds in cfg; -> minutes per stage."""
    times = {}
    if a.unet_rounds:
        embed = caption_embeddings(clip, caps)
        dm = model.model.diffusion_model
        dm.float()
        t = time.time()
        tw = cfg["toy_world"]
        done = len(tw.get("unet_rounds", [])) or int("unet_steps" in tw)   # rounds already in a resumed file
        for k, (steps, lr) in enumerate(a.unet_rounds, start=done):
            train_unet(dm, latents, caps, embed, steps, a.unet_batch, lr, a.seed + 2 + k)
        times["unet"] = time.time() - t
    t = time.time()
    for steps, lr in a.decoder_rounds:
        refine_decoder(vae, imgs, z, steps, a.decoder_batch, lr, a.seed + 3)
    if a.decoder_rounds:
        times["decoder"] = time.time() - t
    tw = cfg["toy_world"]
    tw.setdefault("unet_rounds", []).extend(a.unet_rounds)
    tw.setdefault("decoder_rounds", []).extend(a.decoder_rounds)
    if a.mixed_data and a.decoder_rounds:
        tw.setdefault("decoder_rounds_mixed_data", []).extend(a.decoder_rounds)
    if a.mixed_data and a.unet_rounds:      # rounds on a resumed file's mixed data: which mix
        tw.setdefault("unet_rounds_mixed_data", []).append({"rounds": a.unet_rounds, "two_share": a.mixed[0],
                                                            "turn_share": a.mixed[1]})
    return times


def resume(a, sc, imgs, caps, times):
    """Further rounds on a finished checkpoint; tensors of untouched parts are copied as stored.
    The minutes of its data and encoding count towards the file's total like its rounds'."""
    import safetensors.torch
    cfg = sc.read_config(a.resume)
    sd = safetensors.torch.load_file(a.resume)
    model, clip, vae_obj = sc.load_checkpoint(a.resume)
    vae = vae_obj.first_stage_model.float()
    t = time.time()
    z = encode_all(vae, imgs)
    latents = (z / float(vae.vae_scale)).float()
    times = {"resume_data": times["data"] + time.time() - t}
    times.update(train_stages(a, cfg, model, clip, vae, imgs, caps, z, latents))
    parts = []
    if a.unet_rounds:
        parts.append((sc.UNET_PREFIX, model.model.diffusion_model.state_dict()))
    if a.decoder_rounds:
        parts.append((sc.VAE_PREFIX + "taesd_decoder.", vae.taesd_decoder.state_dict()))
    for prefix, new in parts:
        for k, v in new.items():
            sd[prefix + k] = v.to(sd[prefix + k].dtype).contiguous()
    minutes = cfg["toy_world"].setdefault("minutes", {})
    for k, v in times.items():
        minutes[k] = round(minutes.get(k, 0) + v / 60, 2)
    safetensors.torch.save_file(sd, a.out, metadata={sc.CONFIG_KEY: json.dumps(cfg)})
    log(f"saved {a.out} ({os.path.getsize(a.out) / 2 ** 20:.1f} MiB); minutes {json.dumps(minutes)}")


# ---------------------------------------------------------------------------------------------
# Stage "words": localised word attention and two-object scenes (model v2)

def turn_share(a, tw):
    """--turn-share if given, else the source file's (the share its autoencoder was made for)."""
    return tw.get("turn_share", 0.0) if a.turn_share is None else a.turn_share


def caption_tokens(clip, caps):
    """{caption: [77 token ids]}, checking that the words naming the objects (before "on") are
    one token each, so that word i sits at position i + 1."""
    def ids(text):
        return [t for t, _ in clip.tokenize(text)["l"][0]]
    out, single = {}, {}
    for c in sorted(set(caps)) + [""]:
        out[c] = ids(c)
        for w in c.split(" on ")[0].split() if c else []:
            if w not in single:
                single[w] = ids(w)[2] == 49407
            if not single[w]:
                raise ValueError(f"caption {c!r}: the word {w!r} is more than one token")
    return out


class VocabularyRows:
    """The text encoder's token table while stage 'words' trains, as a parameter holding only the
    rows the captions use. ComfyUI embeds each caption on its own, and every lookup in the full
    49,408-row table costs a dense gradient of that table in backward: with ~100 distinct captions
    a batch that was about a quarter of a step. Rows no caption uses get no gradient, and with no
    weight decay on the text encoder neither AdamW nor the EMA moves them, so training the used
    rows alone is the same training (up to rounding), 1.3x faster per step."""

    def __init__(self, table, token_lists):
        import torch
        self.table = table
        self.used = torch.tensor(sorted({t for ids in token_lists for t in ids}), dtype=torch.long)
        index = torch.full((table.weight.shape[0],), -1, dtype=torch.long)
        index[self.used] = torch.arange(len(self.used))
        self.module = _rows_embedding(table.weight.detach()[self.used].clone(), index)

    def write_back(self):
        """Copy the rows (whatever they hold now: live or EMA weights) into the full table."""
        import torch
        with torch.no_grad():
            self.table.weight[self.used] = self.module.rows.to(self.table.weight.dtype)

    def install_table(self, encoder):
        """Put the full table, rows written back, into the encoder (to save it, or for good)."""
        self.write_back()
        encoder.set_input_embeddings(self.table)


def _rows_embedding(rows, index):
    import torch

    class RowsEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rows = torch.nn.Parameter(rows)
            self.register_buffer("index", index, persistent=False)

        @property
        def weight(self):               # ComfyUI reads the table's device from it
            return self.rows

        def forward(self, ids, out_dtype=None):
            idx = self.index[ids]
            if bool((idx < 0).any()):
                raise ValueError("a token outside the captions' vocabulary reached the text encoder")
            out = torch.nn.functional.embedding(idx, self.rows)
            return out if out_dtype is None else out.to(out_dtype)
    return RowsEmbedding()


class AttentionProbe:
    """attn2 replacement that computes attention explicitly and keeps the probabilities, so the
    training loss can see where each word is attended."""

    def __init__(self):
        self.maps = []

    def __call__(self, q, k, v, extra):
        from vp2p_core.control import apply_probs, attention_probs
        p = attention_probs(q, k, extra["n_heads"])                   # the controller's own explicit attention
        self.maps.append(p.mean(1))                                   # [b, n, tokens]
        return apply_probs(p, v, extra["n_heads"], q.dtype)


def attention_loss(maps, masks, words, valid, share):
    """Mean squared gap between the attention a pixel gives an object's colour + shape words and
    `share` x the object's coverage of that pixel, over every cross-attention layer."""
    import torch.nn.functional as F
    total, count = 0.0, 0
    for p in maps:
        r = int(round(p.shape[1] ** 0.5))
        m = F.adaptive_avg_pool2d(masks, r).flatten(2)               # [b, 2, n]
        for o in range(words.shape[1]):
            ok = valid & (words[:, o, 0] >= 0)
            if not ok.any():
                continue
            idx = words[ok, o].clamp(min=0)                          # [k, 2]
            a = p[ok].gather(2, idx[:, None, :].expand(-1, p.shape[1], -1)).sum(-1)   # [k, n]
            total = total + (a - share * m[ok, o]).pow(2).mean(-1).sum()
            count += int(ok.sum())
    return total / max(count, 1)


def train_words(model, clip, latents, caps, masks, words, a, save):
    """UNet + text encoder (trained together, padding zeroed) with eps-MSE plus
    a.attn_weight x attention_loss at t < a.attn_tmax; EMA of both. Resumable: the optimiser,
    EMA and RNG states are saved with every checkpoint to OUT.state.pt."""
    import numpy as np
    import torch
    from . import devkit as tl
    steps, lr = a.words_steps, a.words_lr
    dm = model.model.diffusion_model.float()
    te = clip.cond_stage_model.float()
    tokens = caption_tokens(clip, caps)
    encoder = te.clip_l.transformer
    vocab = VocabularyRows(encoder.get_input_embeddings(), tokens.values())
    encoder.set_input_embeddings(vocab.module)
    unet_params = [p for p in dm.parameters()]
    text_params = [p for n, p in te.named_parameters() if p.is_floating_point() and "position_ids" not in n]
    params = unet_params + text_params
    for p in params:
        p.requires_grad_(True)
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW([{"params": unet_params, "lr": lr, "weight_decay": 1e-2},
                             {"params": text_params, "lr": lr * a.text_lr_ratio, "weight_decay": 0.0}])
    sched = warmup_cosine(opt, steps)
    rng = np.random.default_rng(a.seed + 7)
    g = torch.Generator().manual_seed(a.seed + 7)
    start = 0
    state_path = a.out + ".state.pt"
    if a.words_continue:
        st = torch.load(state_path, weights_only=False)
        for p, v in zip(params, st["params"]):
            p.data.copy_(v)
        for e, v in zip(ema, st["ema"]):
            e.copy_(v)
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        rng.bit_generator.state = st["rng"]
        g.set_state(st["gen"])
        start = st["step"]
        log(f"words: continuing at step {start}/{steps}")
    masks_t, words_t = torch.from_numpy(masks), torch.from_numpy(words)
    probe = AttentionProbe()
    keys = [key for _, _, key in tl.host.layout.transformer_blocks(model)]
    topts = {"patches_replace": {"attn2": {k: probe for k in keys}}}
    dm.train()
    te.train()
    # ComfyUI's CLIP layers add residuals in place after their LayerNorms saved the input:
    # hand those norms a copy while training (the UNet gets the same from autograd_safe)
    hooks = [m.register_forward_pre_hook(lambda mod, args: (args[0].clone(),) + tuple(args[1:]))
             for n, m in te.named_modules() if n.rsplit(".", 1)[-1] in ("layer_norm1", "layer_norm2")]
    def save_full(step):                 # the checkpoint holds the full token table
        vocab.install_table(encoder)
        save(step)
        encoder.set_input_embeddings(vocab.module)
    with tl.host.grad.autograd_safe(dm):
        _words_loop(dm, te, params, ema, opt, sched, rng, g, start, latents, caps, tokens, masks_t, words_t,
                    probe, topts, a, save_full, state_path)
    vocab.install_table(encoder)
    for h in hooks:
        h.remove()
    for p in params:
        p.requires_grad_(False)
    dm.eval()
    te.eval()


def _words_loop(dm, te, params, ema, opt, sched, rng, g, start, latents, caps, tokens, masks_t, words_t,
                probe, topts, a, save, state_path):
    import torch
    from vp2p_core.schedule import sd1_sigmas
    abar = 1.0 / (1.0 + sd1_sigmas().float() ** 2)
    steps = a.words_steps
    t0, avg, avg_a = time.time(), None, None
    for step in range(start, steps):
        idx_np = rng.integers(0, len(latents), a.unet_batch)
        idx = torch.from_numpy(idx_np)
        x0 = latents[idx]
        keep = torch.rand(len(idx), generator=g) >= 0.1
        bcaps = [caps[i] if k else "" for i, k in zip(idx_np, keep.tolist())]
        uniq = sorted(set(bcaps))
        z = te.clip_l([tokens[c] for c in uniq])[0].float()         # [u, 77, C], padding zeroed
        ctx = z[torch.tensor([uniq.index(c) for c in bcaps])]
        t = torch.randint(0, 1000, (len(idx),), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        ab = abar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        probe.maps = []
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = dm(xt, t.float(), context=ctx, transformer_options=dict(topts))
        err = (pred.float() - eps).pow(2)
        if a.min_snr:
            snr = ab / (1 - ab)
            err = err * (snr.clamp(max=a.min_snr) / snr)
        if a.eps_obj_weight:        # small objects are a few latent cells: weight them up
            w = 1 + a.eps_obj_weight * masks_t[idx].sum(1).clamp(max=1)[:, None]
            loss_eps = (err * w).mean() / w.mean()
        else:
            loss_eps = err.mean()
        valid = keep & (t < a.attn_tmax)
        loss_attn = attention_loss(probe.maps, masks_t[idx], words_t[idx], valid, a.attn_share)
        loss = loss_eps + a.attn_weight * loss_attn
        ema_step(loss, opt, sched, params, ema, step)
        la = float(loss_attn.detach()) if hasattr(loss_attn, "detach") else float(loss_attn)
        avg = loss_eps.item() if avg is None else 0.98 * avg + 0.02 * loss_eps.item()
        avg_a = la if avg_a is None else 0.98 * avg_a + 0.02 * la
        done = step + 1
        if step % 50 == 0 or done == steps:
            el = time.time() - t0
            log(f"words {done}/{steps} eps {avg:.4f} attn {avg_a:.4f}  ({el:.0f} s, "
                f"eta {el / (done - start) * (steps - done):.0f} s)")
        if done % a.save_every == 0 or done == steps:
            live = [p.detach().clone() for p in params]
            torch.save({"step": done, "params": live, "ema": ema, "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "rng": rng.bit_generator.state, "gen": g.get_state()},
                       state_path)
            with torch.no_grad():                     # the checkpoint holds the EMA weights
                for e, p in zip(ema, params):
                    p.copy_(e)
            save(done)
            with torch.no_grad():
                for v, p in zip(live, params):
                    p.copy_(v)


def words_stage(a, sc):
    """Stage 'words' from a finished checkpoint. From v1 (model v2): the autoencoder is kept; the
    text path stops passing the caption through its padding, and UNet + text encoder learn words
    that sit on their objects, on a mix of one- and two-object images. From v3: a further round
    (its own warm-up + cosine cycle) on v3's kind of data, minutes added to the stage's."""
    cfg = sc.read_config(a.words_from)
    cfg["text_only_words"] = True
    model, clip, vae_obj = sc.load_checkpoint(a.words_from, cfg=cfg)
    vae = vae_obj.first_stage_model.float()
    tw = cfg["toy_world"]
    v3 = tw.get("version") == 3
    t = time.time()
    turn = turn_share(a, tw)
    imgs, caps, masks, words, _ = dataset(a.words_images, a.seed + 5, a.size, a.two_share, turn)
    latents = (encode_all(vae, imgs) / float(vae.vae_scale)).float()
    log(f"words data: {len(imgs)} images, {len(set(caps))} captions ({time.time() - t:.0f} s)")
    rec = {"images": a.words_images, "two_share": a.two_share, "turn_share": turn, "steps": a.words_steps, "lr": a.words_lr,
           "text_lr_ratio": a.text_lr_ratio, "attn_weight": a.attn_weight, "attn_share": a.attn_share,
           "attn_tmax": a.attn_tmax, "batch": a.unet_batch, "eps_obj_weight": a.eps_obj_weight, "seed": a.seed}
    if a.min_snr:
        rec["min_snr"] = a.min_snr
    if v3:
        tw.setdefault("words_rounds", []).append(rec)
    else:
        tw["words"] = rec
    minutes0 = tw.setdefault("minutes", {}).get("words", 0)

    def save(step):
        rec["steps_done"] = step
        tw["minutes"]["words"] = round(minutes0 + (time.time() - t) / 60, 2)    # with making the data
        sc.save_checkpoint(a.out, cfg, model, clip, vae_obj)
        log(f"saved {a.out} at step {step} ({os.path.getsize(a.out) / 2 ** 20:.1f} MiB); "
            f"minutes {json.dumps(tw['minutes'])}, total {sum(tw['minutes'].values()):.1f}")
    if a.words_continue:
        minutes0 = sc.read_config(a.out)["toy_world"]["minutes"].get("words", 0)
    train_words(model, clip, latents, caps, masks, words, a, save)


def scratch_stage(a, sc):
    """Model v3: every part trained on the data the edits see. The autoencoder learns one- and
    two-object images with turned objects and an object-weighted L1 (v1's, trained on one large
    upright object, rounded small shapes: the ceiling of v2's two-object accuracy); text encoder
    and UNet learn words that sit on their objects from the start. Resumable: the autoencoder is
    kept in OUT.ae.pt, the words loop in OUT.state.pt (--words-continue)."""
    import torch
    import comfy.sd
    t = time.time()
    imgs, caps, masks, words, pix = dataset(a.words_images, a.seed + 5, a.size, a.two_share, a.turn_share)
    times = {"data": time.time() - t}
    log(f"data: {len(imgs)} images, {len(set(caps))} captions ({times['data']:.0f} s)")
    ae_path = a.out + ".ae.pt"
    if os.path.exists(ae_path):
        st = torch.load(ae_path, weights_only=False)
        import comfy.taesd.taesd as taesd
        vae = taesd.TAESD()
        vae.load_state_dict(st["sd"])
        times["vae"] = st["seconds"]
        log(f"autoencoder from {ae_path}")
    else:
        t = time.time()
        vae = train_vae(imgs, a.vae_steps, a.vae_batch, 2e-3, a.seed + 1, pix, a.ae_obj_weight)
        times["vae"] = time.time() - t
        torch.save({"sd": vae.state_dict(), "seconds": times["vae"]}, ae_path)
    t = time.time()
    z = encode_all(vae, imgs)
    std = float(z.std())
    with torch.no_grad():
        vae.vae_scale.fill_(std)
    latents = (z / std).float()
    times["encode"] = time.time() - t
    cfg = {"unet": sc.unet_config(**UNET), "clip": sc.clip_config(**CLIP), "latent_scale": 1.0, "seed": a.seed,
           "text_only_words": True,
           "toy_world": {"version": 3, "size": a.size, "images": a.words_images, "two_share": a.two_share,
                         "turn_share": a.turn_share, "vae_steps": a.vae_steps, "ae_obj_weight": a.ae_obj_weight,
                         "words": {"steps": a.words_steps, "lr": a.words_lr, "attn_weight": a.attn_weight,
                                   "attn_share": a.attn_share, "eps_obj_weight": a.eps_obj_weight,
                                   "batch": a.unet_batch},
                         "decoder_rounds": a.decoder_rounds}}
    clip, model = sc.build_clip(cfg), sc.build_model(cfg)
    tw = cfg["toy_world"]
    t0 = time.time()
    minutes0 = sc.read_config(a.out)["toy_world"]["minutes"].get("words", 0) if a.words_continue else 0

    def minutes():
        return {**{k: round(v / 60, 2) for k, v in times.items()}, "words": round(minutes0 + (time.time() - t0) / 60, 2)}

    def save(step):
        tw["words"]["steps_done"] = step
        tw["minutes"] = minutes()
        sc.save_checkpoint(a.out, cfg, model, clip, comfy.sd.VAE(sd=vae.state_dict()))
        log(f"saved {a.out} at step {step}; minutes {json.dumps(tw['minutes'])}")
    if a.words_steps:       # 0: autoencoder and decoder only, for --global-from (the candidate's route)
        train_words(model, clip, latents, caps, masks, words, a, save)
    words_minutes = minutes()["words"]
    t = time.time()
    for steps, lr in a.decoder_rounds:
        refine_decoder(vae, imgs, z, steps, a.decoder_batch, lr, a.seed + 3, obj_masks=pix, obj_weight=a.ae_obj_weight)
    times["decoder"] = time.time() - t
    tw["minutes"] = {**{k: round(v / 60, 2) for k, v in times.items()}, "words": words_minutes}
    sc.save_checkpoint(a.out, cfg, model, clip, comfy.sd.VAE(sd=vae.state_dict()))
    log(f"saved {a.out} ({os.path.getsize(a.out) / 2 ** 20:.1f} MiB); minutes {json.dumps(tw['minutes'])}, "
        f"total {sum(tw['minutes'].values()):.1f}")


def global_stage(a, sc):
    """v1's route on v3's autoencoder: a fresh UNet learns shapes with the whole caption at every
    padding position (on one upright object per image, as v1: on v3's mixed data it had not in
    4,200 steps), before stage 'words' moves them onto the words. Keeps the source's autoencoder
    and its minutes; UNet and text encoder start afresh."""
    src = sc.read_config(a.global_from)
    _, _, vae_obj = sc.load_checkpoint(a.global_from)
    vae = vae_obj.first_stage_model.float()
    tw0 = src["toy_world"]
    t = time.time()
    turn = turn_share(a, tw0)
    imgs, caps, _, _, _ = dataset(a.words_images, a.seed + 5, a.size, a.two_share, turn)
    latents = (encode_all(vae, imgs) / float(vae.vae_scale)).float()
    # only the autoencoder's minutes carry over: the source's UNet rounds (and their data) are dropped
    minutes = {k: v for k, v in tw0["minutes"].items() if k in ("data", "vae", "encode", "decoder")}
    minutes["global_data"] = (time.time() - t) / 60
    tw = {k: v for k, v in tw0.items() if k not in ("words", "words_rounds", "minutes")}
    tw.update(unet_batch=a.unet_batch, unet_images=a.words_images,
              unet_two_share=a.two_share, unet_turn_share=turn)
    unet = src["unet"] if a.unet_channels is None else dict(src["unet"], model_channels=a.unet_channels)
    cfg = {"unet": unet, "clip": src["clip"], "latent_scale": 1.0, "seed": a.seed, "toy_world": tw}
    clip, model = sc.build_clip(cfg), sc.build_model(cfg)
    embed = caption_embeddings(clip, caps)
    dm = model.model.diffusion_model.float()
    log(f"global stage: {len(imgs)} images, {len(set(caps))} captions ({minutes['global_data'] * 60:.0f} s)")
    t = time.time()
    for k, (steps, lr) in enumerate(a.unet_rounds):
        train_unet(dm, latents, caps, embed, steps, a.unet_batch, lr, a.seed + 2 + k)
        minutes["unet"] = (time.time() - t) / 60
        tw["unet_rounds"] = a.unet_rounds[:k + 1]           # each round saved: --resume can add more
        tw["minutes"] = {name: round(v, 2) for name, v in minutes.items()}
        dm.float()
        sc.save_checkpoint(a.out, cfg, model, clip, vae_obj)
        log(f"saved {a.out} after round {k + 1}; minutes {json.dumps(tw['minutes'])}, "
            f"total {sum(tw['minutes'].values()):.1f}")


if __name__ == "__main__":
    main()
