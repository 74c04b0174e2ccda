"""Tune On Video / Load Video Tuning in a real ComfyUI on the tiny model."""
import os

import pytest
import torch

from vp2p_dev import comfy_host
from vp2p_dev import devkit as tl


def _mods():
    return tl.host.inflation, tl.host.tuning, tl.host.unet


@pytest.fixture(scope="module")
def cond(tiny):
    return tl.encode(tiny[1], "a red circle moving right")


@pytest.fixture(scope="module")
def inflated(tiny):
    return _mods()[0].inflate(tiny[0], True, True, 0, 0)


@pytest.fixture(scope="module")
def video():
    return tl.video_latent(4, 8, 8, seed=21)


def _tune(model, video, cond, steps=3, lr=1e-3, seed=33, **kw):
    with torch.inference_mode():  # as in ComfyUI's executor
        return _mods()[1].tune_on_video(model, video, cond, steps, lr, seed, **kw)


def _predict(model, cond, latent, sigma=2.0):
    with torch.inference_mode():
        r = tl.UNetRunner(model)
        return r.denoise(r.to_model_space(latent), torch.tensor(sigma), [cond[0][0]], [0])[0].clone()


def _snapshot(model):
    """Everything of the input MODEL that tuning could touch (taken with no clone patched in)."""
    import comfy.model_management as mm
    mm.unload_all_models()
    dm = model.model.diffusion_model
    temporal = _mods()[0].temporal_modules(model)
    return {
        "weights": {k: v.clone() for k, v in dm.state_dict().items()},
        "param_objects": [id(p) for p in dm.parameters()],
        "temporal": {p: {k: v.clone() for k, v in m.state_dict().items()} for p, m in temporal.items()},
        "temporal_objects": {p: [id(t) for t in m.parameters()] for p, m in temporal.items()},
        "requires_grad": [p.requires_grad for m in temporal.values() for p in m.parameters()],
        "object_patches": dict(model.object_patches),
        "patches": {k: list(v) for k, v in model.patches.items()},
        "options": repr(model.model_options),
        "hooks": sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in dm.modules()),
    }


def _assert_same(a, b):
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    for p in a["temporal"]:
        for k in a["temporal"][p]:
            assert torch.equal(a["temporal"][p][k], b["temporal"][p][k]), (p, k)
    for key in ("param_objects", "temporal_objects", "requires_grad", "object_patches", "patches", "options", "hooks"):
        assert a[key] == b[key], key


def test_tuning_changes_exactly_the_allowed_parameters(tiny, inflated, video, cond):
    infl, tune, _ = _mods()
    before = _snapshot(inflated)
    tuned, losses = _tune(inflated, video, cond, steps=4)
    assert len(losses) == 4 and all(l == l for l in losses)
    _assert_same(before, _snapshot(inflated))

    qkeys = set(tune.query_keys(inflated).values())
    assert len(qkeys) == 2 * len(infl.inflation_info(inflated)["blocks"])
    assert set(tuned.patches) == qkeys and inflated.patches == {}
    for k in qkeys:
        assert tuned.patches[k][0][1][0].abs().max() > 0, k
    t_in, t_out = infl.temporal_modules(inflated), infl.temporal_modules(tuned)
    assert t_in.keys() == t_out.keys() and len(t_in) > 0
    for p in t_in:
        sd_in, sd_out = t_in[p].state_dict(), t_out[p].state_dict()
        for k in sd_in:
            assert not torch.equal(sd_in[k], sd_out[k]), (p, k)   # every temporal tensor is trained
    # the effective UNet weights (patches applied) differ exactly in the selection
    import comfy.model_management as mm
    core = tl.core.tuning

    def effective(m):
        with torch.inference_mode():
            mm.load_models_gpu([m])
            return {k: v.clone() for k, v in m.model.diffusion_model.state_dict().items()}
    w_in, w_out = effective(inflated), effective(tuned)
    changed = {k for k in w_out if k not in w_in or not torch.equal(w_in[k], w_out[k])}
    assert changed and all(core.is_trainable(k) for k in changed), sorted(changed)[:5]
    assert {k for k in changed if "to_q" in k and "temporal" not in k} == {k[len("diffusion_model."):] for k in qkeys}
    assert infl.inflation_info(tuned)["tuning"]["steps"] == "4"


def test_loss_drops_on_a_fixed_video(tiny, inflated, video, cond):
    core = tl.core.tuning

    def measure(model):
        with torch.inference_mode():
            r = tl.UNetRunner(model)
            x0 = r.to_model_space(video["samples"])
            c = cond[0][0]
            pred = lambda x, s: (x - r.denoise(x, s, [c], [0])[0]) / s  # noqa: E731
            return core.eval_loss(pred, x0, r.sampling.sigmas.float(), samples=8, seed=5)
    start = measure(inflated)
    tuned, losses = _tune(inflated, video, cond, steps=40, lr=1e-2)
    end = measure(tuned)
    # the tiny random model has little capacity in the trained subset: a few percent is real progress
    assert end < 0.97 * start, (start, end, losses[:3], losses[-3:])


def test_training_is_reproducible_and_checkpointing_is_exact(inflated, video, cond):
    tune = _mods()[1]
    a, la = _tune(inflated, video, cond, steps=3, seed=7, gradient_checkpointing=False)
    b, lb = _tune(inflated, video, cond, steps=3, seed=7)     # checkpointing is the default
    c, lc = _tune(inflated, video, cond, steps=3, seed=8)
    assert la == pytest.approx(lb, abs=1e-6) and la != lc
    sa, sb = tune.tuning_state_dict(a), tune.tuning_state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k


def test_bf16_autocast_runs(inflated, video, cond):
    _, losses = _tune(inflated, video, cond, steps=2, mixed_precision="bf16")
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("failure", ["interrupt", "error"])
def test_input_model_untouched_after_interrupt_or_error(inflated, video, cond, monkeypatch, failure):
    import comfy.model_management as mm
    before = _snapshot(inflated)
    reference = _predict(inflated, cond, video["samples"])
    expected = tl.fail_at_progress(monkeypatch, 2, failure)
    with pytest.raises(expected):
        _tune(inflated, video, cond, steps=6)
    monkeypatch.undo()
    assert not mm.processing_interrupted()
    _assert_same(before, _snapshot(inflated))
    assert torch.equal(_predict(inflated, cond, video["samples"]), reference)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_save_then_load_gives_the_tuned_model(tiny, inflated, video, cond, outdir, models_dir):
    infl, tune, ur = _mods()
    tuned, _ = _tune(inflated, video, cond, steps=3)
    path = tune.save_tuning(tuned, "unit")
    assert path.startswith(os.path.join(outdir, "video_p2p")) and path.endswith(".safetensors")
    name = os.path.relpath(path, os.path.join(outdir, "video_p2p"))
    assert name in tune.list_tunings()
    import safetensors
    with safetensors.safe_open(path, "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["format"] == "vp2p-tuning" and meta["frames"] == "4" and meta["steps"] == "3"
    assert meta["base_fingerprint"] == tl.host.fingerprint.base_fingerprint(tiny[0])
    assert all(k.startswith(("diff.", "temporal.")) for k in keys)
    assert all(tl.core.tuning.is_trainable(k.split(".", 1)[1]) for k in keys)
    loaded = tune.load_tuning(inflated, name)
    x = tl.video_latent(4, 8, 8, seed=22)["samples"]
    assert torch.equal(_predict(loaded, cond, x), _predict(tuned, cond, x))
    assert not torch.equal(_predict(inflated, cond, x), _predict(tuned, cond, x))
    # saving a loaded tuning (a batch row reusing a cached stage) writes the same file as saving it tuned
    again = tune.save_tuning(loaded, "unit_again")
    with safetensors.safe_open(again, "pt") as f:
        assert f.metadata() == meta and list(f.keys()) == keys

    # clear errors
    err = tl.InputError
    with pytest.raises(err, match="not found"):
        tune.load_tuning(inflated, "nope.safetensors")
    with pytest.raises(err, match="not inflated"):
        tune.load_tuning(tiny[0], name)
    with pytest.raises(err, match="without temporal"):
        tune.load_tuning(infl.inflate(tiny[0], False, True, 0, 0), name)
    other = tl.load_ckpt(tl.make_tiny_checkpoint(models_dir, name="vp2p_tiny_other.safetensors", seed=1))[0]
    with pytest.raises(err, match="another base model"):
        tune.load_tuning(infl.inflate(other, True, True, 0, 0), name)
    junk = os.path.join(outdir, "video_p2p", "junk.safetensors")
    import safetensors.torch
    safetensors.torch.save_file({"x": torch.zeros(1)}, junk)
    with pytest.raises(err, match="not a Video-P2P tuning"):
        tune.load_tuning(inflated, "junk.safetensors")


def test_clear_errors(tiny, inflated, video, cond):
    err = tl.InputError
    with pytest.raises(err, match="not inflated"):
        _tune(tiny[0], video, cond)
    with pytest.raises(err, match="at least 2 frames"):
        _tune(inflated, tl.video_latent(1, 8, 8), cond)
    with pytest.raises(err, match="width 32"):
        _tune(inflated, video, [[torch.zeros(1, 77, 32), {}]])
    with pytest.raises(err, match="steps"):
        _tune(inflated, video, cond, steps=0)


def test_nodes_through_the_executor(tiny_ckpt, outdir):
    def graph(model_node):
        g = tl.core_graph(tiny_ckpt, seed=4, steps=2, batch=4)
        del g["6"]
        g["7"]["inputs"]["filename_prefix"] = "vp2p_test/tune"
        g["10"] = {"class_type": "VP2PInflateT2SModel", "inputs": {
            "model": ["1", 0], "temporal_attention": True, "video_norm": True, "frame_chunk": 0, "seed": 0}}
        g["11"] = model_node
        g["5"]["inputs"]["model"] = ["11", 0]
        return g
    tune_node = {"class_type": "VP2PTuneOnVideo", "inputs": {
        "model": ["10", 0], "latent": ["4", 0], "conditioning": ["2", 0], "steps": 3, "learning_rate": 1e-3,
        "seed": 33, "save_name": "exec", "mixed_precision": "off", "gradient_checkpointing": False}}
    tuned = comfy_host.run_prompt(graph(tune_node))["5"][0]["samples"]
    files = os.listdir(os.path.join(outdir, "video_p2p"))
    assert len(files) == 1 and files[0].startswith("exec")
    load_node = {"class_type": "VP2PLoadTuning", "inputs": {"model": ["10", 0], "tuning_file": files[0]}}
    loaded = comfy_host.run_prompt(graph(load_node))["5"][0]["samples"]
    assert torch.equal(loaded, tuned)
    untuned = dict(graph(load_node))
    untuned["5"]["inputs"]["model"] = ["10", 0]
    del untuned["11"]
    assert not torch.equal(comfy_host.run_prompt(untuned)["5"][0]["samples"], tuned)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_unet_tunes_like_fp32(tiny_ckpt, tiny, video, cond, dtype, monkeypatch):
    """The tiny UNet cast to fp16 / bf16 (as ComfyUI loads SD1.5 on a GPU): the default
    precision autocasts in that dtype over fp32 trainable weights, loss-scaled in fp16, and the
    loss falls as it does in fp32."""
    infl, tune, ur = _mods()
    precision = tl.core.precision
    m, _, _ = tl.load_ckpt(tiny_ckpt)
    m.model.diffusion_model.to(dtype)
    m.model.diffusion_model.dtype = dtype
    low = infl.inflate(m, True, True, 0, 0)
    full = infl.inflate(tiny[0], True, True, 0, 0)
    scalers = []
    real = precision.LossScaler

    class Spy(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            scalers.append(self)
    monkeypatch.setattr(tune, "LossScaler", Spy)

    def measure(model):
        core = tl.core.tuning
        with torch.inference_mode():
            r = tl.UNetRunner(model)
            x0 = r.to_model_space(video["samples"])
            pred = lambda x, s: (x - r.denoise(x, s, [cond[0][0]], [0])[0]) / s  # noqa: E731
            return core.eval_loss(pred, x0, r.sampling.sigmas.float(), samples=8, seed=5)
    drops, tuned = {}, {}
    for name, model in (("low", low), ("fp32", full)):
        start = measure(model)
        tuned[name], losses = _tune(model, video, cond, steps=40, lr=1e-2)
        assert all(torch.isfinite(torch.tensor(losses)))
        drops[name] = measure(tuned[name]) / start
    assert len(scalers) == (1 if dtype == torch.float16 else 0)          # fp16 only: bf16 has fp32's range
    if scalers:
        assert scalers[0].skipped < 5 and scalers[0].value >= 2 ** 10
    assert drops["low"] < 0.97 and abs(drops["low"] - drops["fp32"]) < 0.03, drops
    sd = tune.tuning_state_dict(tuned["low"])          # the trained query deltas come from fp32 masters
    assert sd and all(v.dtype == torch.float32 for k, v in sd.items() if k.startswith("diff."))
