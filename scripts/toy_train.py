"""Train the toy-world model from scratch (seeded, CPU): a TAESD autoencoder, a frozen
seeded-random CLIP text model with the real CLIP tokenizer, and an SD1.x-architecture UNet
(ComfyUI's own classes) with epsilon prediction on the SD1 schedule and ~10% empty captions.

Stages: joint autoencoder -> UNet rounds on its (fixed) latents -> decoder-only rounds.

    .venv/bin/python scripts/toy_train.py                      # -> models/toy_world/toy_world_sd1.safetensors
    .venv/bin/python scripts/toy_train.py --images 2000 --vae-steps 50 --unet-rounds 50:8e-4 \
        --decoder-rounds 20:3e-4 --out /tmp/t.safetensors      # smoke run
    .venv/bin/python scripts/toy_train.py --resume CKPT --unet-rounds 500:2e-4 --decoder-rounds ''

Writes the checkpoint (fp16, config in the safetensors metadata) and prints progress and the
minutes of each stage. Needs only the host installed by scripts/setup_host.sh.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

UNET = dict(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1, context_dim=128,
            num_head_channels=16, attention_levels=[0, 1])
CLIP = dict(hidden=128, layers=2, heads=2)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_dataset(n, seed, size):
    import numpy as np
    from vp2p_toy import world
    rng = np.random.default_rng(seed)
    imgs, caps = np.zeros((n, size, size, 3), np.uint8), []
    for i in range(n):
        spec = world.random_spec(rng, frames=1, size=size, motion=False)
        f, _ = world.render(spec)
        imgs[i] = f[0]
        caps.append(spec.caption)
    return imgs, caps


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


def train_vae(imgs, steps, batch, lr, seed):
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
        x = to_pixels(imgs, rng.integers(0, len(imgs), batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = vae.taesd_encoder(x * 0.5 + 0.5)
            y = vae.taesd_decoder(z).sub(0.5).mul(2)
        loss = (y.float() - x).abs().mean() + 1e-4 * z.float().pow(2).mean()
        autoencoder_step("vae", step, steps, opt, sched, loss, y, x, t0)
    return vae


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


def refine_decoder(vae, imgs, z_all, steps, batch, lr, seed, noise=0.05):
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
        loss = (y.float() - x).abs().mean()
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


def train_unet(diffusion_model, latents, caps, embed, steps, batch, lr, seed, drop=0.1):
    """eps-prediction on the SD1 schedule (the VP form of ComfyUI's EPS sampling), bf16 autocast,
    EMA of the weights."""
    import numpy as np
    import torch
    import devkit as tl
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
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            decay = min(0.999, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.lerp_(p.detach(), 1 - decay)
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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)           # booting ComfyUI changes the working directory
    if a.resume:
        a.resume = os.path.abspath(a.resume)
    a.unet_rounds, a.decoder_rounds = parse_rounds(a.unet_rounds), parse_rounds(a.decoder_rounds)
    import torch
    import comfy_host
    import devkit as tl
    comfy_host.boot(threads=a.threads)
    sc = tl.host.checkpoint
    import comfy.sd
    times = {}
    t = time.time()
    imgs, caps = make_dataset(a.images, a.seed, a.size)
    times["data"] = time.time() - t
    log(f"{len(imgs)} images {a.size}x{a.size}, {len(set(caps))} captions ({times['data']:.0f} s)")
    if a.resume:
        return resume(a, sc, imgs, caps)
    t = time.time()
    vae = train_vae(imgs, a.vae_steps, a.vae_batch, 2e-3, a.seed + 1)
    times["vae"] = time.time() - t
    z = encode_all(vae, imgs)
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
    return times


def resume(a, sc, imgs, caps):
    """Further rounds on a finished checkpoint; tensors of untouched parts are copied as stored."""
    import safetensors.torch
    cfg = sc.read_config(a.resume)
    sd = safetensors.torch.load_file(a.resume)
    model, clip, vae_obj = sc.load_checkpoint(a.resume)
    vae = vae_obj.first_stage_model.float()
    z = encode_all(vae, imgs)
    latents = (z / float(vae.vae_scale)).float()
    times = train_stages(a, cfg, model, clip, vae, imgs, caps, z, latents)
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


if __name__ == "__main__":
    main()
