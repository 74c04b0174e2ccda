"""The pack chained with other ComfyUI nodes and mechanisms, in a real ComfyUI on tiny models built
from ComfyUI's classes: keyed wrappers, memory accounting of the temporal modules, attention
options, ControlNet in inversion and tuning, previews, LoRA (with reload in a fresh process),
other nodes' attention patches and wrappers, and models the pack cannot take."""
import json
import os
import subprocess
import sys

import pytest
import torch

from vp2p_dev import devkit as tl

FRAMES, H, W = 3, 8, 8
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _inflate(model, temporal=True, video_norm=True):
    return tl.host.inflation.inflate(model, temporal, video_norm, 0, 0)


def ksample(model, positive, negative, noise, steps=3, cfg=7.5):
    import comfy.sample
    with torch.inference_mode():
        return comfy.sample.sample(model, noise, steps, cfg, "ddim", "ddim_uniform", positive, negative,
                                   torch.zeros_like(noise), seed=0).float()


def invert(model, video, cond, empty, steps=3, mode="null-text", inner=3, cfg=7.5):
    with torch.inference_mode():
        return tl.host.inversion.invert_video(model, video, cond, empty, steps, cfg, mode, inner)


def tune(model, video, cond, steps=2, lr=1e-3):
    with torch.inference_mode():
        return tl.host.tuning.tune_on_video(model, video, cond, steps, lr, 33, mixed_precision="off")


@pytest.fixture(scope="module")
def video():
    return tl.video_latent(FRAMES, H, W, seed=31)


@pytest.fixture(scope="module")
def noise():
    return torch.randn(FRAMES, 4, H, W, generator=torch.Generator().manual_seed(3))


# --------------------------------------------------------------------------- keyed hooks (item 3)
def test_frame_count_rides_a_keyed_diffusion_model_wrapper(tiny):
    from comfy.patcher_extension import WrappersMP
    patches = tl.host.patches
    model = tiny[0]
    m = _inflate(model)
    assert m.get_wrappers(WrappersMP.DIFFUSION_MODEL, patches.VIDEO_FRAMES_KEY) == [patches.video_frames_wrapper]
    assert "model_function_wrapper" not in m.model_options          # the single slot stays free
    assert model.get_wrappers(WrappersMP.DIFFUSION_MODEL, patches.VIDEO_FRAMES_KEY) == []
    assert m.clone().get_wrappers(WrappersMP.DIFFUSION_MODEL, patches.VIDEO_FRAMES_KEY) == \
        [patches.video_frames_wrapper]


def _other_wrappers(model, kind):
    """A clone with another node's wrapper set after Inflate (`kind`), and the list of calls it saw."""
    from comfy.patcher_extension import WrappersMP
    m = model.clone()
    seen = []
    if kind == "model_function_wrapper":        # a node that does NOT chain the previous one
        def wrapper(apply_model, args):
            seen.append(args["input"].shape[0])
            return apply_model(args["input"], args["timestep"], **args["c"])
        m.set_model_unet_function_wrapper(wrapper)
    else:
        def wrapper(executor, *args, **kwargs):
            seen.append(args[0].shape[0])
            return executor(*args, **kwargs)
        m.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "another_node", wrapper)
    return m, seen


@pytest.mark.parametrize("kind", ["model_function_wrapper", "apply_model_wrapper"])
def test_other_nodes_wrappers_after_inflate_keep_video_norm(tiny, prompts, noise, kind):
    inflated = _inflate(tiny[0], True, True)
    no_norm = _inflate(tiny[0], True, False)
    expected = ksample(inflated, *prompts, noise)
    assert not torch.allclose(expected, ksample(no_norm, *prompts, noise), atol=1e-4)   # video norm matters here
    m, seen = _other_wrappers(inflated, kind)
    out = ksample(m, *prompts, noise)
    assert seen and all(b == 2 * FRAMES for b in seen)      # the other node's wrapper ran on every call
    assert torch.equal(out, expected)                        # and the video norm still saw the frames


def test_temporal_modules_are_loaded_and_counted_by_comfyui(tiny):
    import comfy.model_management as mm
    model = tiny[0]
    m = _inflate(model)
    temporal = tl.host.inflation.temporal_modules(m)
    added = sum(t.numel() * t.element_size() for mod in temporal.values() for t in mod.state_dict().values())
    assert added > 0
    assert m.model_size() == model.model_size() + added
    with torch.inference_mode():
        mm.unload_all_models()
        mm.load_models_gpu([model])
        base_loaded = model.loaded_size()
        mm.unload_all_models()
        mm.load_models_gpu([m])
        loaded = m.loaded_size()
        # while loaded, the temporal modules are submodules of ComfyUI's model
        names = {n for n, _ in m.model.diffusion_model.named_modules()}
        mm.unload_all_models()
    assert loaded == base_loaded + added, (loaded, base_loaded, added)
    assert sum(n.endswith(tl.host.patches.TEMPORAL_CHILD) for n in names) == len(temporal)
    # a tuned clone and a clone made by a later node (e.g. a LoRA) keep the count
    assert m.clone().model_size() == m.model_size()
    assert all(p.device == m.offload_device for mod in temporal.values() for p in mod.parameters())


def _attention_spy(monkeypatch):
    import inspect
    import comfy.ldm.modules.attention as attention
    original = attention.optimized_attention
    takes = set(inspect.signature(original).parameters)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(original).parameters.values())
    calls = []

    def spy(q, k, v, heads, *args, **kwargs):
        calls.append({"rows": q.shape[0], "tokens": q.shape[1], "attn_precision": kwargs.get("attn_precision"),
                      "transformer_options": kwargs.get("transformer_options")})
        kw = {k_: v_ for k_, v_ in kwargs.items() if takes_any or k_ in takes}
        return original(q, k, v, heads, *args, **kw)
    monkeypatch.setattr(attention, "optimized_attention", spy)
    return calls, takes_any or "transformer_options" in takes


def test_attention_calls_pass_transformer_options_and_attn_precision(tiny_ckpt, prompts, noise, monkeypatch):
    from comfy.ldm.modules.attention import BasicTransformerBlock, CrossAttention
    model = tl.load_ckpt(tiny_ckpt)[0]        # a model of this test's own: its precision is set below
    for mod in model.model.diffusion_model.modules():
        if isinstance(mod, (BasicTransformerBlock, CrossAttention)):
            mod.attn_precision = torch.float32
    inflated = tl.host.sampling.patched_clone(_inflate(model))   # + the sampler's attn2 patches
    calls, host_takes_options = _attention_spy(monkeypatch)
    ksample(inflated, *prompts, noise, steps=1)
    kinds = {"frame": [c for c in calls if c["tokens"] in (FRAMES * H * W, FRAMES * H * W // 4)],
             "temporal": [c for c in calls if c["tokens"] == FRAMES]}
    assert kinds["frame"] and kinds["temporal"] and len(calls) > len(kinds["frame"]) + len(kinds["temporal"])
    assert all(c["attn_precision"] == torch.float32 for c in calls)
    if host_takes_options:
        # this ComfyUI's kernels take transformer_options (attention overrides; 0.3.75 does, 0.3.52 does not)
        assert all(isinstance(c["transformer_options"], dict) and "block" in c["transformer_options"]
                   for c in calls)
        # an attention override set in transformer_options reaches the pack's attention too
        monkeypatch.undo()
        overridden = []

        def override(func, *args, **kwargs):
            overridden.append(args[0].shape[1])
            return func(*args, **kwargs)
        m = inflated.clone()
        m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
        out = ksample(m, *prompts, noise, steps=1)
        assert FRAMES in overridden and FRAMES * H * W in overridden
        assert torch.equal(out, ksample(inflated, *prompts, noise, steps=1))


# --------------------------------------------------------------------------- ControlNet (item 2)
def with_controlnet(positive, negative, control, strength, seed=6):
    import nodes
    hint = torch.rand(FRAMES, 8 * H, 8 * W, 3, generator=torch.Generator().manual_seed(seed))
    node = nodes.ControlNetApplyAdvanced()
    return node.apply_controlnet(positive, negative, control, hint, strength, 0.0, 1.0)[:2]


def test_controlnet_on_the_source_conditioning_is_part_of_inversion_and_tuning(tiny, prompts, video):
    control = tl.tiny_controlnet(tiny[0])
    cond, empty = prompts
    for mode in ("null-text", "direct-inversion"):
        inv, rec = invert(tiny[0], video, cond, empty, mode=mode)
        inv0, rec0 = invert(tiny[0], video, *with_controlnet(cond, empty, control, 0.0), mode=mode)
        inv1, rec1 = invert(tiny[0], video, *with_controlnet(cond, empty, control, 1.0), mode=mode)
        # strength 0: the same bits as without it; strength 1: a different inversion
        assert torch.equal(inv0.x_T, inv.x_T) and torch.equal(inv0.null_embeddings, inv.null_embeddings), mode
        assert torch.equal(rec0["samples"], rec["samples"]), mode
        assert not torch.allclose(inv1.x_T, inv.x_T, atol=1e-4), mode
        if mode == "null-text":       # the null's gradient flows through the ControlNet on the uncond too
            assert not torch.allclose(inv1.null_embeddings, inv.null_embeddings, atol=1e-6)
    inflated = _inflate(tiny[0])
    _, losses = tune(inflated, video, cond)
    _, losses0 = tune(inflated, video, with_controlnet(cond, empty, control, 0.0)[0])
    _, losses1 = tune(inflated, video, with_controlnet(cond, empty, control, 1.0)[0])
    assert losses0 == losses and losses1 != losses
    # nothing of the ControlNet is left requiring or holding gradients
    assert all(p.grad is None for p in control.control_model.parameters())


# --------------------------------------------------------------------------- previews (item 4)
def test_inversion_and_tuning_show_latent_previews(tiny, prompts, video, monkeypatch):
    import comfy.utils
    from comfy.cli_args import LatentPreviewMethod, args
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.Latent2RGB)
    factors = [[0.3, 0.2, 0.1], [0.1, 0.3, 0.2], [0.2, 0.1, 0.3], [0.1, 0.1, 0.1]]
    monkeypatch.setattr(tiny[0].model.latent_format, "latent_rgb_factors", factors, raising=False)
    seen = []
    original = comfy.utils.ProgressBar.update_absolute

    def update(self, value, total=None, preview=None):
        seen.append((value, total, preview))
        return original(self, value, total, preview)
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update)
    invert(tiny[0], video, *prompts, steps=3, inner=2)
    assert [v for v, _, _ in seen] == list(range(1, 7)) and all(t == 6 for _, t, _ in seen)
    assert all(p is not None and p[0] == "JPEG" for _, _, p in seen)
    assert seen[0][2][1].size == (FRAMES * W, H)          # the frames side by side, at latent resolution
    seen.clear()
    tune(_inflate(tiny[0]), video, prompts[0], steps=2)
    assert [v for v, _, _ in seen] == [1, 2] and all(p is not None and p[1].size == (FRAMES * W, H)
                                                      for _, _, p in seen)
    monkeypatch.setattr(args, "preview_method", LatentPreviewMethod.NoPreviews)
    seen.clear()
    invert(tiny[0], video, *prompts, steps=2, inner=1)
    assert seen and all(p is None for _, _, p in seen)


# --------------------------------------------------------------------------- LoRA (item 5)
def make_tiny_lora(model, folder, name="vp2p_tiny_lora.safetensors", rank=2, seed=12):
    """A LoRA in kohya's key format for the tiny UNet's attention projections."""
    import safetensors.torch
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, w in model.model.diffusion_model.state_dict().items():
        if ".transformer_blocks." in key and key.endswith(("attn2.to_k.weight", "attn1.to_v.weight", "ff.net.2.weight")):
            base = "lora_unet_" + key[:-len(".weight")].replace(".", "_")
            sd[base + ".lora_up.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.3
            sd[base + ".lora_down.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.3
            sd[base + ".alpha"] = torch.tensor(float(rank))
    os.makedirs(folder, exist_ok=True)
    safetensors.torch.save_file(sd, os.path.join(folder, name))
    return name


def lora_model(model, lora_name, strength=1.0):
    import nodes
    return nodes.LoraLoaderModelOnly().load_lora_model_only(model, lora_name, strength)[0]


FRESH = r"""
import json, os, sys
from vp2p_dev import comfy_host
comfy_host.boot(threads=int(sys.argv[3]))
import torch, folder_paths, nodes
from vp2p_dev import devkit as tl
cfg = json.loads(sys.argv[2])
tl.register_models_dir(cfg["models"])
folder_paths.add_model_folder_path("loras", cfg["loras"])
folder_paths.set_output_directory(cfg["output"])
with torch.inference_mode():
    model = tl.load_ckpt(cfg["ckpt"])[0]
    model = nodes.LoraLoaderModelOnly().load_lora_model_only(model, cfg["lora"], 1.0)[0]
    inflated = tl.host.inflation.inflate(model, True, True, 0, 0)
    tuned = tl.host.tuning.load_tuning(inflated, cfg["tuning"])
    video = {"samples": torch.load(cfg["video"])}
    inv = tl.host.inversion.load_inversion(cfg["inversion"], tuned, video)
    rec = tl.host.inversion.reconstruct(tuned, inv)["samples"]
print("RESULT " + json.dumps({"model": tl.host.fingerprint.model_fingerprint(tuned),
                              "base": tl.host.fingerprint.base_fingerprint(inflated),
                              "rec": rec.flatten()[:8].tolist(), "frames": inv.frames}))
"""


def test_lora_model_inflates_tunes_inverts_edits_and_reloads_in_a_fresh_process(tiny_ckpt, tiny, prompts, video,
                                                                                  models_dir, outdir, tmp_path):
    import folder_paths
    fp = tl.host.fingerprint
    loras = os.path.join(models_dir, "loras")
    name = make_tiny_lora(tiny[0], loras)
    folder_paths.add_model_folder_path("loras", loras)
    lora = lora_model(tiny[0], name)
    assert lora.patches and tiny[0].patches == {}
    # the fingerprint is a function of the weights, not of Python objects
    again = lora_model(tiny[0], name)
    assert fp.model_fingerprint(lora) == fp.model_fingerprint(again) != fp.model_fingerprint(tiny[0])
    assert fp.model_fingerprint(lora_model(tiny[0], name, 0.5)) != fp.model_fingerprint(lora)

    inflated = _inflate(lora)
    tuned, losses = tune(inflated, video, prompts[0], steps=2)
    assert len(losses) == 2 and all(l == l for l in losses)
    inv, rec = invert(tuned, video, *prompts, mode="null-text")
    # the LoRA is part of what the inversion saw: the same inversion without it differs
    _, rec_plain = invert(tl.host.tuning.load_tuning(_inflate(tiny[0]), tl.host.tuning.save_tuning(tuned, "lora")),
                          video, *prompts, mode="null-text")
    assert not torch.allclose(rec["samples"], rec_plain["samples"], atol=1e-5)
    with torch.inference_mode():
        edited, source, _ = tl.pack_nodes.edit.VP2PDecoupledSampler.execute(tuned, inv, _controller(tiny[1], 0.2),
                                                                            7.5, "batched").result
    assert torch.isfinite(edited["samples"]).all() and not torch.equal(edited["samples"], source["samples"])

    tuning_path = tl.host.tuning.save_tuning(tuned, "lora_tuning")
    inv_path = tl.host.inversion.save_inversion(inv, "lora_inversion")
    torch.save(video["samples"], str(tmp_path / "video.pt"))
    cfg = {"models": models_dir, "loras": loras, "output": outdir, "ckpt": tiny_ckpt, "lora": name,
           "tuning": os.path.relpath(tuning_path, os.path.join(outdir, "video_p2p")),
           "inversion": os.path.relpath(inv_path, os.path.join(outdir, "video_p2p")),
           "video": str(tmp_path / "video.pt")}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    # the same intra-op thread count as this process: CPU float reductions depend on it
    proc = subprocess.run([sys.executable, "-c", FRESH, REPO, json.dumps(cfg), str(torch.get_num_threads())],
                          capture_output=True, text=True,
                          env=env, timeout=600)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    got = json.loads(lines[-1][len("RESULT "):])
    assert got["model"] == fp.model_fingerprint(tuned) and got["base"] == fp.base_fingerprint(inflated)
    assert got["frames"] == FRAMES
    here = tl.host.inversion.reconstruct(tuned, inv)["samples"].flatten()[:8].tolist()
    assert got["rec"] == here                 # the reloaded tuning + inversion retrace the same bits


# --------------------------------------------------------------------------- other nodes' attn2 patches
def _attn2_other(tag, calls):
    """An IP-Adapter-style attn2 replace patch of another node: attention plus its own term (a
    function, so ComfyUI's deep copies of model_options keep recording into `calls`)."""
    def patch(q, k, v, extra_options):
        calls.append(tag)
        out = tl.core.attention.sdpa_attention(q, k, v, extra_options["n_heads"])
        return out + 0.05 * q.mean(dim=1, keepdim=True)
    return patch


def _with_other_attn2(model, calls):
    """One attn2 patch per block set by another node BEFORE Inflate, and one AFTER it on the first block."""
    blocks = tl.host.layout.transformer_blocks(model)
    before = model.clone()
    for _, _, key in blocks:
        before.set_model_attn2_replace(_attn2_other("before", calls), key[0], key[1], key[2])
    after = _inflate(before).clone()
    key0 = blocks[0][2]
    after.set_model_attn2_replace(_attn2_other("after", calls), key0[0], key0[1], key0[2])
    return after


def test_other_nodes_attn2_patches_run_in_inversion_tuning_and_core_sampling(tiny, prompts, video, noise):
    calls = []
    model = _with_other_attn2(tiny[0], calls)
    inv, _ = invert(model, video, *prompts, mode="null-text")
    assert "before" in calls and "after" in calls
    assert not torch.equal(inv.x_T, invert(_inflate(tiny[0]), video, *prompts, mode="null-text")[0].x_T)
    calls.clear()
    tune(model, video, prompts[0], steps=1)
    assert "before" in calls and "after" in calls
    calls.clear()
    ksample(model, *prompts, noise, steps=1)
    assert "before" in calls and "after" in calls


def _controller(clip, cross_replace):
    return tl.pack_nodes.edit.VP2PController.execute(
        clip, "a red circle moving right", "a blue circle moving right", "swap", cross_replace=cross_replace,
        self_replace=0.5, reweight_words="", reweight_scales="", blend_words="", blend_threshold=0.3,
        blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="").result[0]


def test_other_nodes_attn2_patches_run_under_the_decoupled_sampler(tiny, prompts, video):
    calls = []
    model = _with_other_attn2(tiny[0], calls)
    inv, _ = invert(model, video, *prompts, mode="direct-inversion")
    calls.clear()
    with torch.inference_mode():
        edited, _, _ = tl.pack_nodes.edit.VP2PDecoupledSampler.execute(model, inv, _controller(tiny[1], 0.0), 7.5,
                                                                       "batched").result
    assert "before" in calls and "after" in calls and torch.isfinite(edited["samples"]).all()


# --------------------------------------------------------------------------- models the pack cannot take
def test_unsupported_models_get_a_clear_error_at_inflate(tiny_ckpt, models_dir):
    import nodes
    err = tl.InputError
    sdxl_like = tl.host.checkpoint.build_model(dict(tl.tiny_config(seed=3), unet=dict(
        tl.host.checkpoint.unet_config(), adm_in_channels=32, num_classes="sequential")))
    assert sdxl_like.model.adm_channels == 32
    with pytest.raises(err, match=r"SDXL-style.*SD1\.x-family checkpoint"):
        _inflate(sdxl_like)
    base = tl.load_ckpt(tiny_ckpt)[0]
    v_model = nodes.NODE_CLASS_MAPPINGS["ModelSamplingDiscrete"]().patch(base, "v_prediction", False)[0]
    with pytest.raises(err, match=r"epsilon-prediction.*remove the sampling patch"):
        _inflate(v_model)
    flow = nodes.NODE_CLASS_MAPPINGS["ModelSamplingSD3"]().patch(base, 3.0)[0]
    with pytest.raises(err, match=r"epsilon-prediction"):
        _inflate(flow)
    node = tl.pack_nodes.model.VP2PInflateT2SModel
    with pytest.raises(tl.NodeInputError, match=r"Inflate T2S Model: .*epsilon-prediction"):
        node.execute(v_model, True, True, 0, 0)
    assert _inflate(base) is not None          # the same checkpoint without the patch inflates
