"""Development kit shared by the tests (tests/host) and the benchmarks (bench/): the pack as
ComfyUI loaded it, tiny models, prompts, graph builders. Not shipped (scripts/ is in .comfyignore).

The pack's floors are reached by attribute: `devkit.core.sampling`, `devkit.host.inflation`,
`devkit.pack_nodes.edit.VP2PController`, `devkit.toy.world` (one copy, the one ComfyUI loaded,
so isinstance checks hold)."""
import glob
import json
import os

import torch

import comfy_host

TINY_NAME = "vp2p_tiny_sd1.safetensors"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = sorted(glob.glob(os.path.join(REPO, "workflows", "*.json")))
OLD_WORKFLOWS = sorted(glob.glob(os.path.join(REPO, "tests", "data", "old_*.json")))
SMALL = ["VP2PTuneOnVideo.steps=2", "VP2PSharedNullTextInvert.steps=3", "VP2PSharedNullTextInvert.inner_iterations=1"]


def api_of(path):
    import nodes
    import workflow_api as wa
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


def toy_accuracy(model, clip, vae, per_pair=2, steps=50, cfg=7.5, seed=0):
    """Text-to-image accuracy of a toy-world model by the pixel oracles: core KSampler (ddim,
    ddim_uniform) for every colour x shape pair, backgrounds cycling. -> (colour acc, shape acc, rows)."""
    import itertools
    import nodes
    world, oracle = pack().vp2p_toy.world, pack().vp2p_toy.oracle
    rows = []
    bgs = list(itertools.product(world.BACKGROUNDS, world.BG_COLOURS))
    size = 64
    for i, (colour, shape) in enumerate(itertools.product(world.COLOURS, world.SHAPES)):
        bg, bgc = bgs[i % len(bgs)]
        text = world.caption(colour, shape, bg, bgc)
        lat = nodes.EmptyLatentImage().generate(size, size, per_pair)[0]
        out = nodes.common_ksampler(model, seed + i, steps, cfg, "ddim", "ddim_uniform", encode(clip, text),
                                    encode(clip, ""), lat)[0]
        imgs = vae.decode(out["samples"])
        for f in (imgs.clamp(0, 1) * 255).round().byte().cpu().numpy():
            got = oracle.classify(f)
            rows.append((colour, shape, got["colour"], got["shape"]))
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
