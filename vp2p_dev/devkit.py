"""Development kit shared by the tests (tests/host) and the benchmarks (bench/): the pack as
ComfyUI loaded it, tiny models, prompts, graph builders. Not shipped (vp2p_dev/ is in .comfyignore).

The pack's floors are reached by attribute: `devkit.core.sampling`, `devkit.host.inflation`,
`devkit.pack_nodes.edit.VP2PController`, `devkit.toy.world` (one copy, the one ComfyUI loaded,
so isinstance checks hold)."""
import contextlib
import glob
import json
import os

import torch

from . import comfy_host

TINY_NAME = "vp2p_tiny_sd1.safetensors"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = sorted(glob.glob(os.path.join(REPO, "workflows", "*.json")))
OLD_WORKFLOWS = sorted(glob.glob(os.path.join(REPO, "tests", "data", "old_*.json")))
SMALL = ["VP2PTuneOnVideo.steps=2", "VP2PSharedNullTextInvert.steps=3", "VP2PSharedNullTextInvert.inner_iterations=1"]


def api_of(path):
    import nodes
    from . import workflow_api as wa
    with open(path) as f:
        ui = json.load(f)
    assert wa.missing_node_types(ui, nodes.NODE_CLASS_MAPPINGS) == []
    return wa.ui_to_api(ui, nodes.NODE_CLASS_MAPPINGS)


def scale_down(prompt, extra=()):
    import nodes
    import run_workflow as rw
    for item in list(SMALL) + list(extra):
        key = item.split(".")[0]
        if sum(n["class_type"] == key for n in prompt.values()) == 1:
            rw.apply_overrides(prompt, [item], nodes.NODE_DISPLAY_NAME_MAPPINGS)
        else:
            name, value = item.split(".", 1)[1].split("=", 1)
            for n in prompt.values():
                if n["class_type"] == key:
                    n["inputs"][name] = json.loads(value)
    return prompt


def pack():
    """The pack's package as ComfyUI loaded it (boots ComfyUI if needed)."""
    return comfy_host.boot()["pack"]


_FLOORS = {"core": "vp2p_core", "host": "vp2p_host", "pack_nodes": "nodes", "toy": "vp2p_toy"}


def __getattr__(name):
    if name in _FLOORS:
        return getattr(pack(), _FLOORS[name])
    if name in ("InputError", "NodeInputError"):
        return getattr(pack().vp2p_host.checks, name)
    raise AttributeError(name)


def small_kind():
    """The pack's own model folder kind (where its loader looks; core Load Checkpoint does not)."""
    return pack().vp2p_host.checkpoint.MODEL_KIND


def register_models_dir(path):
    import folder_paths
    os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
    folder_paths.add_model_folder_path(small_kind(), os.path.join(path, "checkpoints"))


def extra_model_paths_yaml(models_dir):
    p = os.path.join(models_dir, "extra_model_paths.yaml")
    with open(p, "w") as f:
        f.write(f"vp2p_tests:\n    base_path: {models_dir}\n    {small_kind()}: checkpoints\n")
    return p


def tiny_config(seed=0, **unet_kw):
    sc = pack().vp2p_host.checkpoint
    return {"unet": sc.unet_config(**unet_kw), "clip": sc.clip_config(hidden=unet_kw.get("context_dim", 64)),
            "latent_scale": 1.0, "seed": seed}


def make_tiny_checkpoint(models_dir, name=TINY_NAME, seed=0, **unet_kw):
    sc = pack().vp2p_host.checkpoint
    path = os.path.join(models_dir, "checkpoints", name)
    if not os.path.exists(path):
        cfg = tiny_config(seed, **unet_kw)
        model = sc.build_model(cfg)
        clip = sc.build_clip(cfg)
        vae = sc.build_vae(cfg)
        sc.save_checkpoint(path, cfg, model, clip, vae)
    return name


def load_ckpt(name):
    import folder_paths
    sc = pack().vp2p_host.checkpoint
    return sc.load_checkpoint(folder_paths.get_full_path(small_kind(), name))


def encode(clip, text):
    import nodes
    return nodes.CLIPTextEncode().encode(clip, text)[0]


def video_latent(frames=4, h=16, w=16, seed=0, identical=False):
    g = torch.Generator().manual_seed(seed)
    if identical:
        x = torch.randn(1, 4, h, w, generator=g).repeat(frames, 1, 1, 1)
    else:
        # a smooth "moving" video: a shifted random field
        base = torch.randn(1, 4, h, w + frames, generator=g)
        x = torch.cat([base[..., i:i + w] for i in range(frames)])
    return {"samples": x}


def core_graph(ckpt, seed=1, steps=4, batch=2, size=64, sampler="ddim", scheduler="ddim_uniform"):
    """API-format prompt: small checkpoint -> CLIPTextEncode x2 -> KSampler -> VAEDecode."""
    return {
        "1": {"class_type": "VP2PLoadSmallCheckpoint", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red circle"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": seed, "steps": steps, "cfg": 7.5,
                                                   "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "vp2p_test/core"}},
    }


def noise_inversion(model, clip, source, noise, steps=5, cfg=7.5):
    """An inversion whose source branch is plain ComfyUI DDIM from `noise * sigma_0` (every
    step's null = the empty prompt): what KSampler does from an empty latent with ddim_uniform."""
    import comfy.samplers
    from types import SimpleNamespace
    fp = pack().vp2p_host.fingerprint
    sig = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "ddim_uniform",
                                          steps).float().cpu()
    empty = encode(clip, "")[0][0].float()
    return SimpleNamespace(x_T=(noise * sig[0]).float(), sigmas=sig,
                           null_embeddings=empty[None].repeat(len(sig) - 1, 1, 1, 1),
                           source_cond=encode(clip, source)[0][0], empty_cond=empty, source_text=source,
                           cfg=cfg, mode="ddim-cfg",
                           model_fingerprint=fp.model_fingerprint(model), frames=noise.shape[0],
                           latent_hw=tuple(noise.shape[-2:]))


TOY_CKPT = "toy_world_sd1.safetensors"


def text_to_image_u8(model, clip, vae, text, n, steps, cfg, seed, size=64):
    """`n` text-to-image samples of `text` as the toy accuracy figures draw them: core KSampler
    (ddim, ddim_uniform, empty negative) -> uint8 [n, size, size, 3] for the pixel oracles."""
    import nodes
    lat = nodes.EmptyLatentImage().generate(size, size, n)[0]
    out = nodes.common_ksampler(model, seed, steps, cfg, "ddim", "ddim_uniform", encode(clip, text),
                                encode(clip, ""), lat)[0]
    return decode_u8(vae, out["samples"])


def toy_accuracy(model, clip, vae, per_pair=2, steps=50, cfg=7.5, seed=0):
    """Text-to-image accuracy of a toy-world model by the pixel oracles: core KSampler (ddim,
    ddim_uniform) for every colour x shape pair, backgrounds cycling. -> (colour acc, shape acc, rows
    (colour, shape, colour read, shape read, area read px)))."""
    import itertools
    world, oracle = pack().vp2p_toy.world, pack().vp2p_toy.oracle
    rows = []
    bgs = list(itertools.product(world.BACKGROUNDS, world.BG_COLOURS))
    size = 64
    for i, (colour, shape) in enumerate(itertools.product(world.COLOURS, world.SHAPES)):
        bg, bgc = bgs[i % len(bgs)]
        text = world.caption(colour, shape, bg, bgc)
        for f in text_to_image_u8(model, clip, vae, text, per_pair, steps, cfg, seed + i, size):
            got = oracle.classify(f)
            rows.append((colour, shape, got["colour"], got["shape"], got["area"]))
    n = len(rows)
    return sum(r[0] == r[2] for r in rows) / n, sum(r[1] == r[3] for r in rows) / n, rows


def trained_like_inflation(model, seed=9, scale=0.2):
    """An inflated clone whose temporal attention is not the identity (as after tuning)."""
    inflate = pack().vp2p_host.inflation
    m = inflate.inflate(model, True, True, 0, 0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in inflate.temporal_modules(m).values():
            t.to_out.weight.copy_(torch.randn(t.to_out.weight.shape, generator=g) * scale)
    return m


def fail_at_progress(monkeypatch, at, failure, seen=None):
    """Make ComfyUI's progress bar interrupt (as the UI's Cancel does) or raise when it reaches
    `at`; -> the exception the node must let through. Records every value in `seen`."""
    import comfy.model_management as mm
    import comfy.utils
    original = comfy.utils.ProgressBar.update_absolute

    def update(self, value, total=None, preview=None):
        original(self, value, total, preview)
        if seen is not None:
            seen.append(value)
        if value == at:
            if failure == "interrupt":
                mm.interrupt_current_processing(True)
            else:
                raise RuntimeError("boom")
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update)
    return mm.InterruptProcessingException if failure == "interrupt" else RuntimeError


def _unet():
    return pack().vp2p_host.unet


class UNetRunner:
    """The pack's former direct UNet evaluation (ComfyUI's calc_cond_uncond_batch written out for
    one area-less cond per chunk), kept as the independent reference the exactness tests and the
    loop benchmark compare the pack's path through ComfyUI with. Loads the MODEL like ComfyUI's
    samplers do and evaluates denoised predictions."""

    def __init__(self, model, memory_required: int = 0):
        import comfy.model_management
        self.patcher = model
        comfy.model_management.load_models_gpu([model], memory_required=memory_required) if memory_required else \
            comfy.model_management.load_models_gpu([model])
        self.model = model.model
        self.device = model.load_device
        self.sampling = self.model.model_sampling
        self.latent_format = self.model.latent_format
        self.options = model.model_options

    def to_model_space(self, latent: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_in(latent.to(self.device, torch.float32))

    def to_latent_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_out(x).cpu()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, contexts, cond_or_uncond,
                extra_options: dict | None = None):
        """Denoised prediction for each chunk. x: [F,...] shared by all chunks, or a list of
        per-chunk tensors; contexts: per-chunk [1 or F, tokens, dim]."""
        import comfy.patcher_extension
        xs = x if isinstance(x, (list, tuple)) else [x] * len(contexts)
        frames = xs[0].shape[0]
        timestep = sigma if sigma.ndim == 1 and sigma.shape[0] == frames else \
            xs[0].new_ones([frames]) * sigma
        input_x = torch.cat(list(xs))
        ctx = torch.cat([c.to(self.device).repeat(frames // c.shape[0], 1, 1) for c in contexts])
        timestep_ = torch.cat([timestep] * len(contexts))
        topts = comfy.patcher_extension.copy_nested_dicts(self.options.get("transformer_options", {}))
        # the ModelPatcher's wrappers reach the UNet only through transformer_options (as
        # comfy.sampler_helpers.prepare_model_patcher merges them for ComfyUI's samplers)
        comfy.patcher_extension.merge_nested_dicts(topts.setdefault("wrappers", {}),
                                                   getattr(self.patcher, "wrappers", {}) or {}, copy_dict1=False)
        topts["cond_or_uncond"] = list(cond_or_uncond)
        topts["sigmas"] = timestep
        if extra_options:
            topts.update(extra_options)
        c = {"c_crossattn": ctx, "transformer_options": topts}
        wrapper = self.options.get("model_function_wrapper")
        if wrapper is not None:
            out = wrapper(self.model.apply_model, {"input": input_x, "timestep": timestep_, "c": c,
                                                   "cond_or_uncond": list(cond_or_uncond)})
        else:
            out = self.model.apply_model(input_x, timestep_, **c)
        return out.chunk(len(contexts))

    def cfg_denoise(self, x, sigma, cond, uncond, cfg, extra_options=None):
        """ComfyUI's CFG for one video: batch [uncond, cond] exactly as calc_cond_uncond_batch."""
        if abs(cfg - 1.0) < 1e-9:
            return self.denoise(x, sigma, [cond], [_unet().COND], extra_options)[0]
        u, c = self.denoise(x, sigma, [uncond, cond], [_unet().UNCOND, _unet().COND], extra_options)
        return u + (c - u) * cfg


# -- toy-model measurements shared by tests/host/test_toy_model.py and bench/attention_probe.py --

TOY_MODEL_ENV = "VP2P_TOY_MODEL"


def toy_model_path(path=None):
    """The toy checkpoint to measure: `path`, else $VP2P_TOY_MODEL (a candidate checkpoint, to
    check it against the tests' bars before it is shipped), else the shipped model."""
    return path or os.environ.get(TOY_MODEL_ENV) or os.path.join(REPO, "models", "toy_world", TOY_CKPT)


def load_toy(path=None):
    """(MODEL, CLIP, VAE) of a toy checkpoint file (see toy_model_path)."""
    return pack().vp2p_host.checkpoint.load_checkpoint(toy_model_path(path))


def decode_u8(vae, samples):
    """Decoded frames as uint8 [F, H, W, 3] (what the pixel oracles read)."""
    return (vae.decode(samples).clamp(0, 1) * 255).round().byte().cpu().numpy()


def toy_two_object_accuracy(model, clip, vae, captions=12, per_caption=3, steps=50, cfg=7.5, seed=0,
                            caption_seed=4242, with_objects=False):
    """Text-to-image accuracy of a toy-world model on two-object captions ("a C S and a C2 S2 on
    ..."), read by oracle.find_objects / oracle.matches: core KSampler (ddim, ddim_uniform) on
    `captions` random two-object worlds (rng `caption_seed`: not the training captions' seeds).
    -> (share of samples with both objects right, rows (expected [(c, s), (c2, s2)], found [(c, s)],
    both right); `with_objects`: each row also holds find_objects' dicts, masks dropped)."""
    import numpy as np
    world, oracle = pack().vp2p_toy.world, pack().vp2p_toy.oracle
    rng = np.random.default_rng(caption_seed)
    rows = []
    for i in range(captions):
        spec = world.random_spec(rng, frames=1, motion=False, objects=2)
        want = [(o.colour, o.shape) for o in spec.objects()]
        for f in text_to_image_u8(model, clip, vae, spec.caption, per_caption, steps, cfg, seed + i, spec.size):
            found = oracle.find_objects(f, k=2)
            row = (want, [(o["colour"], o["shape"]) for o in found], oracle.matches(found, want))
            rows.append(row + ([{k: v for k, v in o.items() if k != "mask"} for o in found],) if with_objects else row)
    return sum(r[2] for r in rows) / len(rows), rows


def attention_probe_specs(n=6, seed=777, frames=8):
    """Held-out moving toy videos for the attention probe, alternately one and two objects
    (two objects of different shapes, so the edited object's shape word names it alone);
    -> [(WorldSpec, index of the object to edit)]: the second object of every other two-object video."""
    import numpy as np
    world = pack().vp2p_toy.world
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        two = len(out) % 2 == 1
        spec = world.random_spec(rng, frames=frames, motion=True, objects=2 if two else 1)
        if two and spec.shape == spec.second.shape:
            continue
        out.append((spec, (len(out) // 2) % 2 if two else 0))
    return out


@contextlib.contextmanager
def recording_blend_mask(controller):
    """Within the block, the dict yielded holds the last mask the local blend of `controller` (a
    P2P Controller output) applied ("mask": bool [F, 1, h, w]) and the source blend words' summed
    maps it was read from ("maps": [F, h, w])."""
    lb = controller.controller.local_blend
    original, seen = lb.mask, {}

    def recording(maps_src, maps_tgt, size, src_cols=None, tgt_cols=None):   # the mask applied, step by step
        out = original(maps_src, maps_tgt, size, src_cols, tgt_cols)
        cols = lb.src_tokens if src_cols is None else src_cols
        seen.update(mask=out, maps=maps_src[..., cols].sum(-1))
        return out
    lb.mask = recording
    try:
        yield seen
    finally:
        del lb.mask                                # back to the class's method


def cells_to_pixels(mask, H, W):
    """A per-frame latent-cell mask [F, h, w] (numpy) as a pixel mask [F, H, W] (bool)."""
    import numpy as np
    cell = np.ones((H // mask.shape[1], W // mask.shape[2]))
    return np.stack([np.kron(f, cell) > 0.5 for f in mask])


def attention_probe(model, clip, vae, spec, obj=0, steps=25, cfg=7.5, threshold=0.3, blend_start=0.2,
                    mode="direct-inversion", inflate=True, change="shape", blend_maps=None):
    """Word-attention localisation of a toy model as a user's edit sees it, on one rendered video.

    The video is encoded with the model's VAE, inverted by Shared Null-Text Invert (`mode`) with
    its caption, and edited by the Decoupled Sampler with a P2P Controller word swap of object
    `obj`'s shape word (to another shape), a local blend on that shape word (`threshold`) and the
    attention-map output for that word (`change="colour"`: swap its colour instead, so the blend
    word is in both prompts and the mask is the union of both branches' maps, as in a colour
    edit; `blend_maps`: the controller's option of that name, e.g. the source's map alone). `inflate`:
    the model inflated as the Inflate node does (untuned), else the image model. Per frame:
      peak_in     the map image's brightest pixel lies in a latent cell the object covers > 1/4
      peak_px     ... the object covers that very pixel > 1/2
      blend_ratio area of the local-blend mask the sampler applied at the last step / object area
      blend_frame share of the frame inside that mask
      raw_ratio   the same ratio for the word's accumulated map > threshold x its max before the
                  blend's 3x3 max-pool (what the attention itself marks: the mask a blend
                  without the max-pool would apply)
      other_in_mask (two objects) share of the other object's area inside that mask: what the
                  blend leaves the target branch free to repaint of the object that must not change
    -> dict(caption, target, word, rows=[per-frame dicts], seconds)."""
    import time
    import numpy as np
    import torch
    p = pack()
    world = p.vp2p_toy.world
    t0 = time.perf_counter()
    frames, truth = world.render(spec)
    objs = spec.objects()
    word = objs[obj].shape
    if change == "colour":   # the shape word stays in the target: the blend also reads the target's map
        new = {"colour": next(c for c in world.COLOURS if all(c != o.colour for o in objs))}
    else:
        new = {"shape": next(s for s in world.SHAPES if s != word and all(s != o.shape for o in objs))}
    target = (spec.with_object(**new) if obj == 0 else spec.with_second(**new)).caption
    if inflate:
        model = p.vp2p_host.inflation.inflate(model, True, True, 0, 0)
    with torch.inference_mode():
        latent = {"samples": vae.encode(torch.from_numpy(frames.astype("float32") / 255.0)).float()}
    ctrl_node, inv_node = p.nodes.edit.VP2PController, p.nodes.inversion.VP2PSharedNullTextInvert
    spec_c, src_cond, _ = ctrl_node.execute(clip, spec.caption, target, "swap", 0.2, 0.5, "", "", word, threshold,
                                            blend_start, "cross+temporal (paper)", word,
                                            blend_maps=blend_maps or p.vp2p_core.prompts.BLEND_BOTH).result
    lb = spec_c.controller.local_blend
    with recording_blend_mask(spec_c) as seen, torch.inference_mode():
        inv, _ = inv_node.execute(model, latent, src_cond, encode(clip, ""), steps, cfg, mode, 10).result
        _, _, maps_img = p.nodes.edit.VP2PDecoupledSampler.execute(model, inv, spec_c, cfg, "auto").result
    F_, H, W = frames.shape[:3]
    lh, lw = latent["samples"].shape[-2:]
    ch, cw = H // lh, W // lw
    cover = truth["objects"][obj]["masks"]                                 # [F, H, W] 0..1
    cell_cover = cover.reshape(F_, lh, ch, lw, cw).mean(axis=(2, 4))       # [F, lh, lw]
    heat = maps_img[:, :, :maps_img.shape[1] * W // H, 0].numpy()         # the first (only) panel's red channel
    mask = seen["mask"][:, 0].cpu().numpy()                                # [F, lh, lw] bool
    raw = seen["maps"].cpu().numpy()                                       # [F, h, w] (h, w: the blend resolution)
    raw = raw / raw.max(axis=(1, 2), keepdims=True).clip(1e-12) > threshold
    rows = []
    for f in range(F_):
        y, x = np.unravel_index(int(heat[f].argmax()), heat[f].shape)
        py, px = int(y * H / heat.shape[1]), int(x * W / heat.shape[2])
        area = float(cover[f].sum())
        rows.append({"peak_in": bool(cell_cover[f, py // ch, px // cw] > 0.25), "peak_px": bool(cover[f, py, px] > 0.5),
                     "blend_ratio": float(mask[f].sum()) * H * W / mask[f].size / area,
                     "blend_frame": float(mask[f].mean()),
                     "raw_ratio": float(raw[f].sum()) * H * W / raw[f].size / area})
        if len(objs) > 1:   # how much of the object the edit must leave alone lies inside the mask
            other = truth["objects"][1 - obj]["masks"][f]
            big = cells_to_pixels(mask[f:f + 1], H, W)[0]
            rows[-1]["other_in_mask"] = float((other * big).sum() / max(float(other.sum()), 1e-6))
    return {"caption": spec.caption, "target": target, "word": word, "objects": len(objs), "rows": rows,
            "seconds": time.perf_counter() - t0}


def attention_probe_summary(results):
    """Totals over videos: share of frames whose peak is in the object, mean / median ratios."""
    import numpy as np
    rows = [r for res in results for r in res["rows"]]
    col = lambda k: np.array([r[k] for r in rows], float)  # noqa: E731
    out = {"frames": len(rows), "peak_in": col("peak_in").mean(), "peak_px": col("peak_px").mean(),
           "blend_ratio_mean": col("blend_ratio").mean(), "blend_ratio_median": np.median(col("blend_ratio")),
           "blend_frame_mean": col("blend_frame").mean(), "blend_frame_max": col("blend_frame").max(),
           "raw_ratio_mean": col("raw_ratio").mean(), "raw_ratio_median": np.median(col("raw_ratio")),
           "video_blend_ratio_max": max(np.mean([r["blend_ratio"] for r in res["rows"]]) for res in results)}
    other = [r["other_in_mask"] for r in rows if "other_in_mask" in r]
    if other:
        out["other_in_mask_mean"] = float(np.mean(other))
    return {k: v if k == "frames" else round(float(v), 4) for k, v in out.items()}


def toy_batch(folder, frames=4, size=64, extra=()):
    """A batch of toy clips for scripts/batch.py: two clips as PNG folders (a red circle, a blue
    square), an API workflow loading a clip by path (toy_word_swap with Load Video (VP2P) instead
    of Toy World Video, scaled down, only the edited video saved) and a manifest of 4 rows: two
    targets of the first clip, a missing clip, the second clip. -> (workflow path, manifest path)."""
    import csv
    from PIL import Image
    world = pack().vp2p_toy.world
    os.makedirs(folder, exist_ok=True)
    clips = {}
    for name, shape, colour in (("clip_a", "circle", "red"), ("clip_b", "square", "blue")):
        video, _ = world.render(world.WorldSpec(shape=shape, colour=colour, frames=frames, size=size))
        clips[name] = os.path.join(folder, name)
        os.makedirs(clips[name], exist_ok=True)
        for i, frame in enumerate(video):
            Image.fromarray(frame).save(os.path.join(clips[name], f"{i:03d}.png"))
    prompt = scale_down(api_of(os.path.join(REPO, "workflows", "toy_word_swap.json")), extra)
    toy = next(i for i, n in prompt.items() if n["class_type"] == "VP2PToyWorldVideo")
    prompt[toy] = {"class_type": "VP2PLoadVideo", "inputs": {
        "video": "(none)", "path": "", "frame_start": 0, "frame_count": frames, "stride": 1, "width": size,
        "height": size, "multiple_of": 8, "resize_mode": "crop"}}
    keep = {"VP2PSaveVideo"}
    for nid in [i for i, n in prompt.items() if n["class_type"] in ("VP2PSideBySide", "SaveImage", "PreviewImage",
                                                                    "VP2PSaveVideo", "VP2PSaveInversion")]:
        if prompt[nid]["class_type"] in keep and prompt[nid]["inputs"].get("format") == "mp4":
            keep = set()
            continue
        del prompt[nid]
    used = {v[0] for n in prompt.values() for v in n["inputs"].values() if isinstance(v, list)}
    outputs = {i for i, n in prompt.items() if n["class_type"] == "VP2PSaveVideo"}
    prompt = {i: n for i, n in prompt.items() if i in used or i in outputs}
    workflow = os.path.join(folder, "workflow_api.json")
    with open(workflow, "w") as f:
        json.dump(prompt, f, indent=1)
    manifest = os.path.join(folder, "manifest.csv")
    src = "a red circle on a striped gray background"
    rows = [("a_green", clips["clip_a"], src, src.replace("red", "green")),
            ("a_blue", clips["clip_a"], src, src.replace("red", "blue")),
            ("missing", os.path.join(folder, "no_such_clip"), src, src.replace("red", "green")),
            ("b_green", clips["clip_b"], "a blue square on a striped gray background",
             "a green square on a striped gray background")]
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "video", "source", "target"])
        w.writerows(rows)
    return workflow, manifest


def tiny_controlnet(model, seed=4):
    """A ControlNet for the tiny UNet, built from ComfyUI's classes with seeded random weights."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_management as mm
    import comfy.ops
    cfg = dict(model.model.model_config.unet_config)
    cfg.pop("out_channels", None)
    for k in ("use_temporal_attention", "use_temporal_resblock", "dtype", "operations", "device"):
        cfg.pop(k, None)
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, dtype=torch.float32, device="cpu",
                                     operations=comfy.ops.disable_weight_init, **cfg)
    sd = pack().vp2p_host.checkpoint.random_state_dict(net, seed)
    net.load_state_dict(sd)
    return comfy.controlnet.ControlNet(net, load_device=mm.get_torch_device(), manual_cast_dtype=None)
