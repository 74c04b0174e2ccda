"""Shared Null-Text Invert, its schedule and Save/Load Inversion, in a real ComfyUI on the tiny model."""
import copy
import os

import pytest
import torch

from vp2p_dev import comfy_host
from vp2p_dev import devkit as tl

FRAMES, H, W, STEPS, CFG = 3, 8, 8, 10, 7.5


def _inv():
    return tl.host.inversion


def invert(model, video, cond, empty, steps=STEPS, cfg=CFG, mode="null-text", inner=10, **kw):
    with torch.inference_mode():  # as in ComfyUI's executor
        return _inv().invert_video(model, video, cond, empty, steps, cfg, mode, inner, **kw)


def mse(a, b):
    return (a["samples"] - b["samples"]).pow(2).mean().item()


def model_sampling(model):
    return model.get_model_object("model_sampling") if hasattr(model, "get_model_object") \
        else model.model.model_sampling


def comfy_ddim_uniform(model, steps):
    import comfy.samplers
    if hasattr(comfy.samplers, "calculate_sigmas"):   # newer ComfyUI: takes model_sampling
        return comfy.samplers.calculate_sigmas(model_sampling(model), "ddim_uniform", steps)
    return comfy.samplers.calculate_sigmas_scheduler(model.model, "ddim_uniform", steps)


def sampler_source_branch(model, inv):
    """The Decoupled Sampler's source branch without control, written out."""
    with torch.inference_mode():
        runner = tl.UNetRunner(model)
        dev = runner.device
        x = inv.x_T.to(dev).float()
        sig = inv.sigmas.to(dev)
        for i in range(len(inv.sigmas) - 1):
            den = runner.cfg_denoise(x, sig[i], inv.source_cond.to(dev), inv.null_embeddings[i].to(dev), inv.cfg,
                                     {"vp2p_frames": inv.frames})
            x = tl.core.schedule.ddim_step(x, den, sig[i], sig[i + 1])
        return runner.to_latent_space(x)


@pytest.fixture(scope="module")
def video():
    return tl.video_latent(FRAMES, H, W, seed=21)


@pytest.fixture(scope="module")
def fast_and_null(tiny, video, prompts):
    return invert(tiny[0], video, *prompts, mode="ddim-cfg"), invert(tiny[0], video, *prompts, mode="null-text")


# --------------------------------------------------------------------------- schedule
def test_schedule_is_comfyuis_ddim_uniform(tiny):
    sch = tl.core.schedule
    table = model_sampling(tiny[0]).sigmas
    assert torch.equal(sch.sd1_sigmas(), table.float().cpu())
    for steps in (2, 3, 7, 10, 50, 600):
        ours, comfy = sch.ddim_uniform(steps), comfy_ddim_uniform(tiny[0], steps)
        assert ours.dtype == torch.float32 and torch.equal(ours, comfy.float().cpu()), steps
        assert ours[-1] == 0 and bool((ours[:-1] > ours[1:]).all())
    # ComfyUI's quirk: stride 1000 // steps, so non-divisors can give more steps than asked
    assert len(sch.ddim_uniform(50)) == 51 and len(sch.ddim_uniform(7)) == 9 and len(sch.ddim_uniform(600)) == 1000
    with pytest.raises(ValueError):
        sch.ddim_uniform(0)


# --------------------------------------------------------------------------- core, with a stand-in model
def _gauss_denoiser(weight=0.5):
    """The exact denoiser for unit-Gaussian data, plus a context-dependent term (so the null matters)."""
    def denoise(x, sigma, ctx, is_cond):
        return x / (1 + sigma ** 2) + weight * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1) * sigma / (1 + sigma)

    def cfg_denoise(x, sigma, cond, uncond, cfg):
        u, c = denoise(x, sigma, uncond, False), denoise(x, sigma, cond, True)
        return u + (c - u) * cfg
    return denoise, cfg_denoise


def test_core_optimiser_schedule_per_reference(monkeypatch):
    inv, sch = tl.core.inversion, tl.core.schedule
    denoise, cfg_denoise = _gauss_denoiser()
    created = []
    adam = torch.optim.Adam

    def spy(params, lr):
        created.append(lr)
        return adam(params, lr=lr)
    monkeypatch.setattr(torch.optim, "Adam", spy)
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    cond, empty = torch.full((1, 77, 8), 1.0), torch.zeros(1, 77, 8)
    sig = sch.ddim_uniform(50)
    res = inv.invert(denoise, cfg_denoise, x0, sig, cond, empty, 7.5, "null-text", inner_iterations=3)
    assert created == [pytest.approx(1e-2 * (1 - i / 100), rel=0, abs=1e-15) for i in range(50)]  # fresh Adam per step
    assert res.nulls.shape == (50, 1, 77, 8) and all(0 <= k <= 3 for k in res.iterations)
    # the retrace gets better than plain DDIM's with the empty prompt
    fast = inv.invert(denoise, cfg_denoise, x0, sig, cond, empty, 7.5, "ddim-cfg")
    assert (res.reconstruction - x0).pow(2).mean() < 0.1 * (fast.reconstruction - x0).pow(2).mean()
    assert torch.equal(res.x_T, fast.x_T)


def test_core_early_stop_and_chained_initialisation(monkeypatch):
    inv, sch = tl.core.inversion, tl.core.schedule
    denoise, cfg_denoise = _gauss_denoiser(weight=0.0)     # the null has no effect: zero gradient
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    empty = torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(2))
    sig = sch.ddim_uniform(5)
    res = inv.invert(denoise, cfg_denoise, x0, sig, empty + 1, empty, 7.5, "null-text", inner_iterations=4)
    assert res.iterations == [4] * 5 and torch.equal(res.nulls, empty[None].repeat(5, 1, 1, 1))
    monkeypatch.setattr(inv, "EARLY_STOP", 1e9)
    res = inv.invert(denoise, cfg_denoise, x0, sig, empty + 1, empty, 7.5, "null-text", inner_iterations=4)
    assert res.iterations == [0] * 5
    # per-frame nulls: one per frame, each step starting from the previous step's
    denoise, cfg_denoise = _gauss_denoiser()
    monkeypatch.undo()
    res = inv.invert(denoise, cfg_denoise, x0, sig, empty + 1, empty, 7.5, "null-text", 2, per_frame=True)
    assert res.nulls.shape == (5, 2, 77, 8)
    assert not torch.equal(res.nulls[0, 0], res.nulls[0, 1]) and not torch.equal(res.nulls[0], res.nulls[1])


# --------------------------------------------------------------------------- node, tiny model
def test_guidance_one_inversion_reconstructs(tiny, video, prompts):
    (inv_fast, rec_fast) = invert(tiny[0], video, *prompts, cfg=1.0, mode="fast")
    x0 = video["samples"]
    assert (inv_fast.x_T - x0).pow(2).mean() > 0.3          # moved far (measured 0.69), not a no-op
    assert mse(rec_fast, video) < 5e-3 * x0.var()            # first-order DDIM inversion error only
    # at guidance 1 the unconditional embedding is unused: every mode gives the same bits
    for mode in ("null-text", "ddim-cfg"):
        inv, rec = invert(tiny[0], video, *prompts, cfg=1.0, mode=mode)
        assert torch.equal(rec["samples"], rec_fast["samples"]) and torch.equal(inv.x_T, inv_fast.x_T), mode
    # fixed-point refinement makes the inversion the exact inverse of the sampler's step
    _, rec = invert(tiny[0], video, *prompts, cfg=1.0, mode="fast", fixed_point_iterations=3)
    assert (rec["samples"] - x0).abs().max() < 1e-3


def test_null_text_beats_plain_ddim_at_cfg(tiny, video, prompts, fast_and_null):
    (inv_f, rec_f), (inv_n, rec_n) = fast_and_null
    err_f, err_n = mse(rec_f, video), mse(rec_n, video)
    assert err_n < err_f / 4, (err_f, err_n)             # measured: ~6x lower at 10 steps
    assert torch.equal(inv_n.x_T, inv_f.x_T)             # same DDIM inversion underneath
    assert inv_n.losses[-1] == pytest.approx(mse(rec_n, video), rel=1e-4)
    assert all(1 <= k <= 10 for k in inv_n.iterations)
    # the official fast mode: guided sampling with uncond == cond is guidance 1
    _, rec_np = invert(tiny[0], video, *prompts, mode="fast")
    _, rec_1 = invert(tiny[0], video, *prompts, cfg=1.0, mode="fast")
    assert torch.allclose(rec_np["samples"], rec_1["samples"], atol=1e-5)


def test_inversion_object(tiny, video, prompts, fast_and_null):
    fp = tl.host.fingerprint
    (inv_f, _), (inv, rec) = fast_and_null
    n, c = STEPS, prompts[0][0][0].shape[-1]
    assert inv.null_embeddings.shape == (n, 1, 77, c)    # ONE null per step, shared by all frames
    assert inv.x_T.shape == (FRAMES, 4, H, W) and inv.frames == FRAMES and inv.latent_hw == (H, W)
    for t in (inv.x_T, inv.sigmas, inv.null_embeddings, inv.source_cond, inv.empty_cond):
        assert t.dtype == torch.float32 and t.device.type == "cpu"
    assert torch.equal(inv.sigmas, comfy_ddim_uniform(tiny[0], STEPS).float())
    assert torch.equal(inv.source_cond, prompts[0][0][0].float()) and torch.equal(inv.empty_cond, prompts[1][0][0])
    assert inv.cfg == CFG and inv.mode == "null-text" and inv.seconds > 0 and len(inv.losses) == n
    assert inv.model_fingerprint == fp.model_fingerprint(tiny[0])
    assert inv.latent_fingerprint == fp.latent_fingerprint(video["samples"])
    # the nulls moved away from the empty prompt, step by step
    assert not torch.equal(inv.null_embeddings[0, 0], inv.empty_cond[0])
    assert all(not torch.equal(inv.null_embeddings[i], inv.null_embeddings[i + 1]) for i in range(n - 1))
    assert torch.equal(inv_f.null_embeddings, inv.empty_cond[None].repeat(n, 1, 1, 1))
    # the reconstruction output is bit for bit the sampler's source branch
    assert torch.equal(rec["samples"], sampler_source_branch(tiny[0], inv))
    assert torch.equal(rec["samples"], _inv().reconstruct(tiny[0], inv)["samples"])


def test_inflated_model_every_call_carries_the_frame_count(inflated, video, prompts):
    calls = []
    m = inflated.clone()
    previous = m.model_options.get("model_function_wrapper")

    def spy(apply_model, args):
        calls.append((args["input"].shape[0], args["c"]["transformer_options"].get("vp2p_frames")))
        return previous(apply_model, args) if previous else apply_model(args["input"], args["timestep"], **args["c"])
    m.set_model_unet_function_wrapper(spy)
    inv, rec = invert(m, video, *prompts, steps=4, inner=10)
    assert calls and all(f == FRAMES and b in (FRAMES, 2 * FRAMES) for b, f in calls)
    assert inv.null_embeddings.shape[:2] == (4, 1)
    assert torch.equal(rec["samples"], sampler_source_branch(m, inv))
    _, rec_f = invert(m, video, *prompts, steps=4, mode="ddim-cfg")
    assert mse(rec, video) < mse(rec_f, video) / 2, (mse(rec, video), mse(rec_f, video))
    # per-frame nulls (ablation option) plug into the same sampler loop
    inv_pf, rec_pf = invert(m, video, *prompts, steps=2, inner=2, per_frame=True)
    assert inv_pf.null_embeddings.shape[:2] == (2, FRAMES)
    assert torch.equal(rec_pf["samples"], sampler_source_branch(m, inv_pf))


# --------------------------------------------------------------------------- interrupt / errors
def _snapshot(model):
    import comfy.model_management as mm
    mm.unload_all_models()
    dm = model.model.diffusion_model
    return {"weights": {k: v.clone() for k, v in dm.state_dict().items()},
            "params": [(id(p), p.requires_grad, p.grad) for p in dm.parameters()],
            "patches": {k: list(v) for k, v in model.patches.items()},
            "object_patches": dict(model.object_patches), "options": repr(model.model_options),
            "hooks": sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in dm.modules())}


def test_null_text_checkpointing_is_exact(inflated, video, prompts, monkeypatch):
    """Checkpointed blocks (the default) give the nulls of the plain backward, and are really used."""
    import torch.utils.checkpoint as cp
    calls = []
    original = cp.checkpoint

    def counting(*a, **kw):
        calls.append(1)
        return original(*a, **kw)
    plain = invert(inflated, video, *prompts, steps=4, inner=3, gradient_checkpointing=False)[0]
    assert not calls
    monkeypatch.setattr(cp, "checkpoint", counting)
    ckpt = invert(inflated, video, *prompts, steps=4, inner=3)[0]
    assert calls                                   # the inflated blocks were recomputed in backward
    assert sum(plain.iterations) > 0 and not torch.equal(plain.null_embeddings[0], plain.empty_cond)
    assert torch.allclose(plain.null_embeddings, ckpt.null_embeddings, atol=1e-6, rtol=0)
    assert plain.losses == pytest.approx(ckpt.losses, abs=1e-9)


@pytest.mark.parametrize("failure", ["interrupt", "error"])
def test_interrupt_or_error_leaves_the_model_untouched(tiny, inflated, video, prompts, monkeypatch, failure):
    import comfy.model_management as mm
    model = tiny[0] if failure == "interrupt" else inflated
    before = _snapshot(model)
    assert all(g is None for _, _, g in before["params"])
    seen = []
    # 4 inversion steps, then 2 optimisation steps
    expected = tl.fail_at_progress(monkeypatch, 4 + 2, failure, seen)
    with pytest.raises(expected):
        invert(model, video, *prompts, steps=4, inner=3)
    monkeypatch.undo()
    assert seen == list(range(1, 7))                     # stopped within the step it was asked to
    assert not mm.processing_interrupted()
    after = _snapshot(model)
    assert after["weights"].keys() == before["weights"].keys()
    assert all(torch.equal(before["weights"][k], after["weights"][k]) for k in before["weights"])
    for key in ("params", "patches", "object_patches", "options", "hooks"):
        assert after[key] == before[key], key
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_clear_errors(tiny, video, prompts):
    import comfy.model_base
    err = tl.InputError
    model = tiny[0]
    with pytest.raises(err, match="steps must be at least 2"):
        invert(model, video, *prompts, steps=1)
    with pytest.raises(err, match="cfg must be > 0"):
        invert(model, video, *prompts, cfg=0.0)
    with pytest.raises(err, match="empty"):
        invert(model, {"samples": torch.zeros(0, 4, H, W)}, *prompts)
    with pytest.raises(err, match="width 32"):
        invert(model, video, [[torch.zeros(1, 77, 32), {}]], prompts[1])
    with pytest.raises(err, match="empty_conditioning has width 32"):
        invert(model, video, prompts[0], [[torch.zeros(1, 77, 32), {}]])
    with pytest.raises(err, match="token count"):
        invert(model, video, [[torch.zeros(1, 154, 64), {}]], prompts[1])
    with pytest.raises(err, match="mode must be one of"):
        invert(model, video, *prompts, mode="exact")
    v_model = model.clone()
    v_model.model = copy.copy(model.model)
    v_model.model.model_type = comfy.model_base.ModelType.V_PREDICTION
    with pytest.raises(err, match="epsilon-prediction"):
        invert(v_model, video, *prompts)
    node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    assert "Shared Null-Text Invert" in str(pytest.raises(err, node.execute, model, video, *prompts, steps=1).value)


# --------------------------------------------------------------------------- files
def test_save_load_round_trip_and_mismatches(tiny, inflated, models_dir, video, prompts, fast_and_null, outdir):
    inv_mod = _inv()
    err = tl.InputError
    _, (inv, _) = fast_and_null
    path = inv_mod.save_inversion(inv, "unit")
    assert path.startswith(os.path.join(outdir, "video_p2p")) and path.endswith(".safetensors")
    name = os.path.relpath(path, os.path.join(outdir, "video_p2p"))
    import safetensors.torch
    safetensors.torch.save_file({"x": torch.zeros(1)}, os.path.join(outdir, "video_p2p", "junk.safetensors"))
    assert inv_mod.list_inversions() == [name]           # only inversion files are offered
    loaded = inv_mod.load_inversion(name, tiny[0], video)
    for f in ("x_T", "sigmas", "null_embeddings", "source_cond", "empty_cond"):
        assert torch.equal(getattr(loaded, f), getattr(inv, f)), f
    for f in ("cfg", "mode", "model_fingerprint", "latent_fingerprint", "frames", "latent_hw", "steps",
              "inner_iterations", "fixed_point_iterations", "losses", "iterations", "seconds"):
        assert getattr(loaded, f) == getattr(inv, f), f
    assert torch.equal(_inv().reconstruct(tiny[0], loaded)["samples"], _inv().reconstruct(tiny[0], inv)["samples"])
    assert inv_mod.load_inversion(name, tiny[0]).frames == FRAMES    # the latent is optional

    other = tl.load_ckpt(tl.make_tiny_checkpoint(models_dir, name="vp2p_tiny_other.safetensors", seed=1))[0]
    with pytest.raises(err, match="another model"):
        inv_mod.load_inversion(name, other)
    with pytest.raises(err, match="another model"):
        inv_mod.load_inversion(name, inflated)
    with pytest.raises(err, match="3 frames but the video latent has 4"):
        inv_mod.load_inversion(name, tiny[0], tl.video_latent(4, H, W, seed=21))
    with pytest.raises(err, match=r"latent size \(8, 8\).*\(8, 16\)"):
        inv_mod.load_inversion(name, tiny[0], tl.video_latent(FRAMES, H, 16, seed=21))
    with pytest.raises(err, match="another video"):
        inv_mod.load_inversion(name, tiny[0], tl.video_latent(FRAMES, H, W, seed=22))
    with pytest.raises(err, match="not found"):
        inv_mod.load_inversion("nope.safetensors", tiny[0])
    with pytest.raises(err, match="not a Video-P2P inversion"):
        inv_mod.load_inversion("junk.safetensors", tiny[0])


def test_nodes_through_the_executor(tiny_ckpt, tiny, prompts, outdir):
    g = {
        "1": {"class_type": "VP2PLoadSmallCheckpoint", "inputs": {"ckpt_name": tiny_ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red circle moving right"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 8 * W, "height": 8 * H, "batch_size": FRAMES}},
        "5": {"class_type": "VP2PSharedNullTextInvert", "inputs": {
            "model": ["1", 0], "latent": ["4", 0], "conditioning": ["2", 0], "empty_conditioning": ["3", 0],
            "steps": 3, "cfg": CFG, "mode": "null-text", "inner_iterations": 2}},
        "6": {"class_type": "VP2PSaveInversion", "inputs": {"inversion": ["5", 0], "filename_prefix": "exec"}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 1], "filename_prefix": "vp2p_test/inv"}},
    }
    out = comfy_host.run_prompt(g)
    inv, rec = out["5"]
    assert isinstance(inv, _inv().Inversion) and inv.null_embeddings.shape[:2] == (3, 1)
    zeros = {"samples": torch.zeros(FRAMES, 4, H, W)}
    direct, direct_rec = invert(tiny[0], zeros, *prompts, steps=3, inner=2)
    assert torch.equal(inv.null_embeddings, direct.null_embeddings) and torch.equal(rec["samples"], direct_rec["samples"])
    files = _inv().list_inversions()
    assert len(files) == 1 and files[0].startswith("exec")
    ui = out["_ui"].get("6")
    assert ui is None or ui["text"] == files     # shown in the UI where the executor reports it
    # load it back in a second prompt (checked against the model and the video) and save it again
    g2 = {k: g[k] for k in ("1", "4")}
    g2["8"] = {"class_type": "VP2PLoadInversion", "inputs": {"inversion_file": files[0], "model": ["1", 0],
                                                             "latent": ["4", 0]}}
    g2["9"] = {"class_type": "VP2PSaveInversion", "inputs": {"inversion": ["8", 0], "filename_prefix": "again"}}
    loaded = comfy_host.run_prompt(g2)["8"][0]
    assert torch.equal(loaded.x_T, inv.x_T) and torch.equal(loaded.null_embeddings, inv.null_embeddings)
    g2["4"]["inputs"]["batch_size"] = FRAMES + 1
    with pytest.raises(RuntimeError, match="frames"):
        comfy_host.run_prompt(g2)


# --------------------------------------------------------------------------- modes (named by what they do)
def _psnr(rec, video):
    x = video["samples"]
    return 10 * torch.log10(x.var() / (rec["samples"] - x).pow(2).mean()).item()


def test_node_modes_and_legacy_values(tiny, video, prompts):
    node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    options = {i.id: i for i in node.GET_SCHEMA().inputs}["mode"].options
    assert set(options) == {"null-text", "fast", "direct-inversion"}      # ddim-cfg: benchmark ablation only
    assert node.validate_inputs(mode="negative-prompt") is True           # saved by earlier versions
    assert "must be one of" in node.validate_inputs(mode="exact")
    # 'fast' is the official fast: no optimisation, the source branch sampled at guidance 1
    inv_f, rec_f = invert(tiny[0], video, *prompts, mode="fast")
    _, rec_1 = invert(tiny[0], video, *prompts, cfg=1.0, mode="ddim-cfg")
    assert torch.equal(rec_f["samples"], rec_1["samples"]) and inv_f.iterations == [0] * STEPS
    assert torch.equal(inv_f.null_embeddings, inv_f.source_cond[None].repeat(STEPS, 1, 1, 1))
    _, rec_d = invert(tiny[0], video, *prompts, mode="ddim-cfg")         # the old 'fast': far worse
    assert _psnr(rec_f, video) > _psnr(rec_d, video) + 3
    # the old name of the official fast gives the same bits
    inv_np, rec_np = invert(tiny[0], video, *prompts, mode="negative-prompt")
    assert inv_np.mode == "fast" and torch.equal(rec_np["samples"], rec_f["samples"])


def test_version_1_files_keep_their_meaning(tiny, video, prompts, outdir):
    """An inversion file saved before the modes were renamed: its 'fast' was plain DDIM at CFG
    (now 'ddim-cfg'), its 'negative-prompt' is today's 'fast'; both reconstruct as they did."""
    import json
    import safetensors
    import safetensors.torch
    inv_mod = _inv()
    for old, now, mode in (("fast", "ddim-cfg", "ddim-cfg"), ("negative-prompt", "fast", "fast")):
        inv, rec = invert(tiny[0], video, *prompts, mode=mode)
        path = inv_mod.save_inversion(inv, "v1")
        with safetensors.safe_open(path, framework="pt") as f:
            meta = dict(f.metadata())
        info = json.loads(meta["inversion"])
        info["mode"] = old
        sd = {k: v for k, v in safetensors.torch.load_file(path).items() if k != "trajectory"}
        safetensors.torch.save_file(sd, path, metadata=dict(meta, version="1", inversion=json.dumps(info)))
        loaded = inv_mod.load_inversion(os.path.relpath(path, os.path.join(outdir, "video_p2p")), tiny[0], video)
        assert loaded.mode == now
        assert torch.allclose(inv_mod.reconstruct(tiny[0], loaded)["samples"], rec["samples"], atol=1e-5), old


def test_direct_inversion_keeps_the_source_on_its_trajectory(tiny, video, prompts, outdir):
    """Direct inversion's reconstruction is the input's own trajectory by construction: this checks
    the construction (no optimisation, the stored trajectory, the correction applied), which fails
    if the source branch is not put back on it; it says nothing about inversion quality."""
    inv_mod = _inv()
    inv, rec = invert(tiny[0], video, *prompts, mode="direct-inversion")
    inv_n, _ = invert(tiny[0], video, *prompts, mode="ddim-cfg")
    assert inv.iterations == [0] * STEPS and torch.equal(inv.x_T, inv_n.x_T)
    assert inv.trajectory.shape == (STEPS + 1, FRAMES, 4, H, W)
    assert torch.equal(inv.trajectory[0], inv.x_T)
    assert (rec["samples"] - video["samples"]).abs().max() < 1e-5          # the correction was applied
    assert torch.equal(inv.null_embeddings, inv.empty_cond[None].repeat(STEPS, 1, 1, 1))
    # the trajectory travels with saved inversions
    path = inv_mod.save_inversion(inv, "direct")
    loaded = inv_mod.load_inversion(os.path.relpath(path, os.path.join(outdir, "video_p2p")), tiny[0], video)
    assert loaded.mode == "direct-inversion" and torch.equal(loaded.trajectory, inv.trajectory)
    assert torch.equal(inv_mod.reconstruct(tiny[0], loaded)["samples"], rec["samples"])


# --------------------------------------------------------------------------- low-precision UNets
def _stand_in_half(weight=0.03):
    """A denoiser computed in fp16 like a half-precision UNet (fp32 in and out) whose output
    depends on the context through a wide layer and a small output layer: the backward pass
    shrinks the per-element gradient (~1e-7, an fp16 subnormal on an SD1.5-sized latent) before
    summing it, so without loss scaling it flushes to zero, as in a real fp16 UNet."""
    def denoise(x, sigma, ctx, is_cond):
        s = sigma.half()
        c = ctx.half().mean(dim=(1, 2)).view(-1, 1, 1, 1)
        feat = (c * 64).expand(x.shape)
        return (x.half() / (1 + s ** 2) + feat * (weight / 64) * (s / (1 + s))).float()

    def cfg_denoise(x, sigma, cond, uncond, cfg):
        u, c = denoise(x, sigma, uncond, False), denoise(x, sigma, cond, True)
        return u + (c - u) * cfg
    return denoise, cfg_denoise


def test_core_null_text_with_an_fp16_model_is_loss_scaled():
    inv, sch = tl.core.inversion, tl.core.schedule
    x0 = torch.randn(8, 4, 64, 64, generator=torch.Generator().manual_seed(0))    # SD1.5-sized latent
    cond, empty = torch.full((1, 77, 8), 0.5), torch.zeros(1, 77, 8)
    sig = sch.ddim_uniform(10)
    half = _stand_in_half()
    # without loss scaling the fp16 backward flushes the null's gradient to zero: the null never moves
    plain = inv.invert(*half, x0, sig, cond, empty, 7.5, "null-text", inner_iterations=3)
    assert torch.equal(plain.nulls, empty[None].repeat(10, 1, 1, 1))
    scaled = inv.invert(*half, x0, sig, cond, empty, 7.5, "null-text", inner_iterations=3,
                        compute_dtype=torch.float16)
    assert not torch.equal(scaled.nulls[0], empty) and scaled.skipped == 0
    # ... and reconstructs as well as the same optimisation on fp32 gradients
    def f32(x, sigma, ctx, is_cond):
        return (x / (1 + sigma ** 2) + 0.03 * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1) * sigma / (1 + sigma))

    def f32_cfg(x, sigma, c, u, g):
        a, b = f32(x, sigma, u, False), f32(x, sigma, c, True)
        return a + (b - a) * g
    ref = inv.invert(f32, f32_cfg, x0, sig, cond, empty, 7.5, "null-text", inner_iterations=3)
    psnr = lambda r: 10 * torch.log10(x0.var() / (r.reconstruction - x0).pow(2).mean()).item()  # noqa: E731
    assert abs(psnr(scaled) - psnr(ref)) < 0.5 and psnr(scaled) > psnr(plain) + 1, (psnr(scaled), psnr(ref), psnr(plain))


def _low_precision_copy(name, dtype):
    m, clip, _ = tl.load_ckpt(name)
    dm = m.model.diffusion_model
    dm.to(dtype)
    dm.dtype = dtype
    return m, clip


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_null_text_with_a_low_precision_unet(tiny_ckpt, tiny, video, prompts, fast_and_null, dtype):
    """The tiny UNet cast to fp16 / bf16: the null moves and the reconstruction is within 0.5 dB
    of the fp32 model's."""
    model, clip = _low_precision_copy(tiny_ckpt, dtype)
    assert tl.host.unet.compute_dtype(tl.UNetRunner(model)) == dtype
    inv, rec = invert(model, video, *prompts)
    _, (inv32, rec32) = fast_and_null
    assert inv.null_embeddings.dtype == torch.float32
    assert (inv.null_embeddings - inv.empty_cond[None]).abs().amax() > 0.1
    assert abs(_psnr(rec, video) - _psnr(rec32, video)) < 0.5, (_psnr(rec, video), _psnr(rec32, video))
