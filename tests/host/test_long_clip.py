"""Long clips through core ComfyUI's context windows (Context Windows (Manual)), real ComfyUI,
tiny model: exact equivalences where the windows must change nothing or reduce to whole-clip
runs of shorter clips, and the limits' errors."""
import pytest
import torch

import devkit as tl

H = W = 8
STEPS, CFG = 3, 7.5


def windowed(model, length, overlap, schedule="standard_static", fuse="flat"):
    """What core's Context Windows (Manual) node returns (its own execute, dim 0)."""
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode
    out = ContextWindowsManualNode.execute(model, length, overlap, schedule, 1, False, fuse, 0)
    return getattr(out, "result", out)[0]


def controller(clip, source, target, **kw):
    args = dict(cross_replace=0.2, self_replace=0.5, reweight_words="", reweight_scales="", blend_words="",
                blend_threshold=0.3, blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="")
    args.update(kw)
    return tl.pack_nodes.edit.VP2PController.execute(clip, source, target, "swap", **args).result


def sample(model, inv, spec):
    return tl.pack_nodes.edit.VP2PDecoupledSampler.execute(model, inv, spec, CFG, "source-first").result


def noise(frames, seed=5):
    return torch.randn(frames, 4, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def inflated(tiny):
    return tl.trained_like_inflation(tiny[0])


def evaluate(model, clip, x, sigma_index=1, layouts=()):
    """Denoised predictions of the source prompt for x (whole clip through the MODEL's handler)
    and for each layout in `layouts` (x's rows of that layout, no windows), in one ComfyUI run."""
    cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
    sampling = model.get_model_object("model_sampling")
    sigmas = torch.cat([sampling.sigmas.flip(0)[::250], torch.zeros(1)]).float()
    host = tl.host

    def body(ev):
        xs = ev.to_model_space(x)
        s = sigmas[sigma_index].to(ev.device)
        whole = ev.denoise(xs, s, True).cpu()
        parts = [ev.denoise(xs[list(lay.index)], s, True, layout=lay).cpu() for lay in layouts]
        return whole, parts
    with torch.inference_mode():
        return host.unet.run_in_comfy(model, cond, empty, x.shape, sigmas, body)


def test_one_window_covering_the_clip_is_the_unwindowed_edit(tiny, inflated):
    clip = tiny[1]
    spec, _, _ = controller(clip, "a red circle", "a blue circle", blend_words="circle", blend_start=0.0)
    inv = tl.noise_inversion(inflated, clip, "a red circle", noise(6), steps=STEPS)
    plain = sample(inflated, inv, spec)
    whole = sample(windowed(inflated, 6, 2), inv, spec)
    for a, b in zip(plain[:2], whole[:2]):
        assert torch.equal(a["samples"], b["samples"])
    assert torch.equal(plain[2], whole[2])


def test_every_window_reads_the_clips_frame_0(tiny, inflated):
    """Through the windows, each window's frames are exactly a whole-clip run of the shorter clip
    [frame 0] + window (temporal attention and video norm on): frame attention of every window
    reads the clip's frame 0, and a window's own frames are all that it contributes."""
    Layout = tl.core.frames.FrameLayout
    frames = 7
    x = noise(frames, 3)
    model = windowed(inflated, 3, 0, "batched")            # windows [0,1,2] [3,4,5] [6]
    subclips = [Layout.window(frames, w, with_anchor=True) for w in ([0, 1, 2], [3, 4, 5], [6])]
    whole, parts = evaluate(model, tiny[1], x, layouts=subclips)
    for lay, part in zip(subclips, parts):
        own = list(lay.own)
        assert torch.equal(whole[[lay.index[p] for p in own]], part[own])
    # the anchor matters: without frame 0 in the window the frames come out differently
    alone, = evaluate(model, tiny[1], x, layouts=[Layout.window(frames, [3, 4, 5], anchor=None)])[1]
    assert (alone - whole[3:6]).abs().max() > 1e-4


def test_a_per_frame_controlnet_hint_follows_each_window(tiny, inflated):
    """A ControlNet with one hint per frame guides each window by that window's hints (and frame 0's
    for the anchor row): frames 3-5 of windows [0,1,2] [3,4,5] change with their own hints and not
    with those of frames 1-2 (core's handler alone hands every window the clip's first hints); a
    tuning step's one-window call sees the same hints."""
    import nodes
    frames = 6
    x = noise(frames, 3)
    model = windowed(inflated, 3, 0, "batched")
    cnet, clip = tl.tiny_controlnet(inflated), tiny[1]
    cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
    sampling = model.get_model_object("model_sampling")
    sigmas = torch.cat([sampling.sigmas.flip(0)[::250], torch.zeros(1)]).float()

    def run(hint):
        positive, _ = nodes.ControlNetApplyAdvanced().apply_controlnet(cond, empty, cnet, hint, 1.0, 0.0, 1.0)

        def body(ev):
            xs, s = ev.to_model_space(x), sigmas[1].to(ev.device)
            part = ev.denoise(xs[list(late.index)], s, True, layout=late).cpu()   # tuning's one-window call
            return ev.denoise(xs, s, True).cpu(), part
        with torch.inference_mode():
            whole, part = tl.host.unet.run_in_comfy(model, positive, empty, x.shape, sigmas, body)
        assert torch.equal(part[list(late.own)], whole[3:])
        return whole
    late = tl.core.frames.FrameLayout.window(frames, [3, 4, 5], with_anchor=True)
    hint = torch.rand(frames, H * 8, W * 8, 3, generator=torch.Generator().manual_seed(2))
    base = run(hint)
    other_early, other_late = hint.clone(), hint.clone()
    other_early[1:3] = 1 - other_early[1:3]
    other_late[4] = 1 - other_late[4]
    assert torch.equal(run(other_early)[3:], base[3:])
    assert (run(other_late)[3:] - base[3:]).abs().max() > 1e-4


def test_identical_prompts_through_overlapping_windows_keep_target_equal_to_source(tiny, inflated):
    """The source->target attention cache is keyed by window: with identical prompts and every
    layer replaced for all steps the target copies its own window's source maps (a cache keyed by
    layer only would replay the last window's maps everywhere)."""
    clip = tiny[1]
    text = "a red circle"
    spec, _, _ = controller(clip, text, text, cross_replace=1.0, self_replace=1.0,
                            controlled_layers="cross+temporal+frame", map_words="circle")
    inv = tl.noise_inversion(inflated, clip, text, noise(7), steps=STEPS)
    edited, source, maps = sample(windowed(inflated, 3, 1, fuse="pyramid"), inv, spec)
    assert torch.equal(edited["samples"], source["samples"])
    # the attention store gathers the windows' maps by global frame: every frame has its map
    assert maps.shape[0] == 7 and bool((maps.flatten(1).abs().sum(1) > 0).all())


@pytest.mark.parametrize("schedule,fuse", [("standard_static", "pyramid"), ("standard_static", "relative"),
                                           ("standard_uniform", "flat")])
def test_windows_run_source_and_target_window_by_window(tiny, inflated, monkeypatch, schedule, fuse):
    """The Decoupled Sampler evaluates each window's source and then its target, so the
    source->target cache never holds more than one window; the result is bit-identical to the
    two-call path (each branch through core's handler on its own, taken when another pack's
    sampler_calc_cond_batch_function is on the MODEL), with word swap, blend and frame control."""
    import comfy.samplers
    clip = tiny[1]
    spec, _, _ = controller(clip, "a red circle", "a blue circle", blend_words="circle", blend_start=0.0,
                            controlled_layers="cross+temporal+frame")
    inv = tl.noise_inversion(inflated, clip, "a red circle", noise(9), steps=STEPS)
    model = windowed(inflated, 4, 1, schedule, fuse)
    two_calls = model.clone()
    two_calls.model_options["sampler_calc_cond_batch_function"] = lambda a: comfy.samplers.calc_cond_batch(
        a["model"], a["conds"], a["input"], a["sigma"], a["model_options"])
    held = []
    attend = tl.core.control.StepContext.attend

    def spy(self, *args, **kwargs):
        out = attend(self, *args, **kwargs)
        if self.cache:
            held.append(len({k[2] for k in self.cache}))
        return out
    monkeypatch.setattr(tl.core.control.StepContext, "attend", spy)
    interleaved = sample(model, inv, spec)
    per_window = max(held)
    held.clear()
    reference = sample(two_calls, inv, spec)
    assert per_window == 1 and max(held) > 1      # windows 4/1 on 9 frames: 3 windows per step
    for a, b in zip(interleaved[:2], reference[:2]):
        assert torch.equal(a["samples"], b["samples"])
    assert torch.equal(interleaved[2], reference[2])


def _modes():
    return ("direct-inversion", "fast", "null-text")


def test_inversion_modes_run_through_windows(tiny, inflated):
    """All modes of Shared Null-Text Invert through the windows (core's set_step would fail on the
    pack's per-frame timestep and on inversion sigmas): one shared null per step, and direct
    inversion reconstructs the clip exactly (its trajectory)."""
    model, clip = windowed(inflated, 3, 1), tiny[1]
    lat = tl.video_latent(5, H, W)
    cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
    node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    for mode in _modes():
        with torch.inference_mode():
            inv, rec = tl.host.inversion.invert_video(model, lat, cond, empty, 2, CFG, mode, 1)
        assert inv.x_T.shape == lat["samples"].shape and torch.isfinite(inv.x_T).all()
        assert inv.null_embeddings.shape[:2] == (len(inv.sigmas) - 1, 1)
        assert torch.isfinite(rec["samples"]).all()
        if mode == "direct-inversion":
            assert (rec["samples"] - lat["samples"]).abs().max() < 1e-3
    assert node is not None


def test_null_text_through_windows_recomputes_each_window_in_backward(tiny, inflated, monkeypatch):
    """Null-text optimisation through windows keeps no window's activations for the backward pass
    (each window is recomputed there, so memory does not grow with the clip) and finds the same
    nulls as keeping them: nothing but the inputs of each window call is saved outside the
    recomputed regions."""
    import torch.utils.checkpoint as cp
    model, clip = windowed(inflated, 3, 1), tiny[1]
    lat = tl.video_latent(7, H, W)
    cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
    original = cp.checkpoint
    calls, saved = [], []

    def spy(fn, *args, **kwargs):
        if fn.__name__ != "window_call":
            return original(fn, *args, **kwargs)
        calls.append(1)
        return original(fn, *args, **kwargs) if keep[0] else fn(*args)

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t
    monkeypatch.setattr(cp, "checkpoint", spy)
    runs = {}
    for keep in ([True], [False]):
        calls.clear(), saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            inv, _ = tl.host.inversion.invert_video(model, lat, cond, empty, 2, CFG, "null-text", 2)
        runs[keep[0]] = (inv.null_embeddings, len(calls), sum(saved))
    (nulls, n_calls, kept), (nulls_ref, _, kept_ref) = runs[True], runs[False]
    assert n_calls > 0 and torch.equal(nulls, nulls_ref)
    assert kept * 20 < kept_ref


def test_null_text_backward_holds_no_earlier_windows_text_context(tiny, inflated, monkeypatch):
    """When the backward pass recomputes a window, the text contexts that the forward pass built for
    the other windows are gone: a checkpointed block takes its context as a checkpoint input, not
    through a closure that the graph would keep alive for every window of the clip."""
    import weakref
    import comfy.conds
    model, clip = windowed(inflated, 3, 1), tiny[1]
    lat = tl.video_latent(9, H, W)
    cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
    concat, made, alive_in_backward = comfy.conds.CONDCrossAttn.concat, [], []

    def spy(self, others):
        out = concat(self, others)
        if torch._C._current_graph_task_id() == -1:         # built by a forward pass, not a recomputation
            made.append(weakref.ref(out))
        elif not alive_in_backward:
            alive_in_backward.append(sum(r() is not None for r in made))
        return out
    monkeypatch.setattr(comfy.conds.CONDCrossAttn, "concat", spy)
    tl.host.inversion.invert_video(model, lat, cond, empty, 2, CFG, "null-text", 1)
    assert len(made) >= 4 and alive_in_backward == [0]


def test_tuning_trains_on_one_window_per_step(tiny, inflated):
    """Tune On Video through the windows: every UNet call holds one window and frame 0 (memory
    bounded by the window), only the allowed parameters change, the input MODEL is untouched."""
    import comfy.patcher_extension as pe
    model = windowed(inflated, 3, 1)
    batches = []

    def spy(executor, x, *args, **kwargs):
        batches.append(x.shape[0])
        return executor(x, *args, **kwargs)
    model.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test_spy", spy)
    before = {p: m.to_q.weight.clone() for p, m in tl.host.inflation.temporal_modules(model).items()}
    lat = tl.video_latent(9, H, W)
    with torch.inference_mode():
        tuned, losses = tl.host.tuning.tune_on_video(model, lat, tl.encode(tiny[1], "a red circle"), steps=3,
                                                     lr=1e-3)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert batches and max(batches) <= 4                   # a window of 3 frames + frame 0
    after = {p: m.to_q.weight for p, m in tl.host.inflation.temporal_modules(tuned).items()}
    assert any(not torch.equal(before[p], after[p]) for p in before)
    assert all(torch.equal(before[p], m.to_q.weight)
               for p, m in tl.host.inflation.temporal_modules(model).items())


@pytest.mark.parametrize("length,overlap,frames,expect", [
    (None, None, 4096, "too long to evaluate as one batch"),
    (8, 2, 6, "longer than the clip"),
    (4, 4, 6, "must be smaller than context_length"),
])
def test_limits_name_the_node_and_the_fix(tiny, inflated, length, overlap, frames, expect):
    model = inflated if length is None else windowed(inflated, length, overlap)
    lat = {"samples": torch.zeros(frames, 4, H, W)}
    clip = tiny[1]
    node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    with pytest.raises(tl.host.checks.NodeInputError) as e:
        node.execute(model, lat, tl.encode(clip, "a red circle"), tl.encode(clip, ""), 2, CFG, "fast", 1)
    msg = str(e.value)
    assert msg.startswith("Shared Null-Text Invert:") and expect in msg and "Context Windows (Manual)" in msg


def test_long_clip_workflow_runs(tmp_path):
    """workflows/toy_long_clip.json through ComfyUI's executor: core's Context Windows (Manual)
    node before tuning, inversion and the sampler (a 40-frame clip here, 192 as shipped)."""
    import os
    import comfy_host
    import folder_paths
    from devkit import REPO, api_of, scale_down
    prompt = scale_down(api_of(os.path.join(REPO, "workflows", "toy_long_clip.json")),
                        ["VP2PToyWorldVideo.frames=40"])
    win = next(n for n in prompt.values() if n["class_type"] == "ContextWindowsManual")["inputs"]
    assert (win["context_length"], win["context_overlap"]) == (16, 4)
    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        out = comfy_host.run_prompt(prompt)
    finally:
        folder_paths.set_output_directory(old)
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "VP2PDecoupledSampler")
    edited, source, maps = out[sampler]
    assert edited["samples"].shape == (40, 4, 8, 8) and maps.shape[0] == 40
    assert not torch.equal(edited["samples"], source["samples"])


def test_the_benchmarks_seam_ratio_sees_a_jump_at_the_window_boundaries():
    """bench/long_clip.py's seam metric: the pairs that straddle core's windows, and a ratio that is
    1 for even flicker and grows when the frames jump where the windows meet (so it can fail)."""
    import numpy as np
    import long_clip
    wins = long_clip.window_lists(40)
    assert [w[0] for w in wins] == [0, 12, 24] and wins[-1][-1] == 39
    seams = long_clip.seam_pairs(wins, 40)
    assert seams == [11, 15, 23, 27]
    assert long_clip.frame_evaluations(wins, 40) == (16 + 17 + 17) / 40 and long_clip.frame_evaluations(
        [list(range(16))], 16) == 1.0
    rng = np.random.default_rng(0)
    video = np.repeat(rng.integers(0, 200, (1, 8, 8, 3)), 40, 0) + (np.arange(40) % 2 * 4)[:, None, None, None]
    bg = np.ones((40, 8, 8), bool)
    assert long_clip.seam_ratio(None, video, bg, seams)[0] == pytest.approx(1.0)
    jumped = video.copy()
    for t in seams:
        jumped[t + 1:] += 20
    assert long_clip.seam_ratio(None, jumped, bg, seams)[0] > 2


def test_the_cost_benchmark_measures_torchs_allocator_peak():
    """bench/long_clip.py cost's allocator figure (the one a GPU's allocator would hold, apart from
    the process RSS) on a real edit of 4 frames, and its ratio table from the rows it writes."""
    import argparse
    import long_clip
    row = long_clip.cost_one(4, 2, 1, "edit", allocator=True)
    assert row["torch_peak_mb"] > row["torch_clip_data_mb"] > 0
    rows = [dict(frames=f, stage=s, windows=1, rows_per_frame=1.0, seconds=1.0, cpu_seconds=f / 10,
                 cpu_s_per_frame=0.1, peak_mb=10.0 * k, clip_data_mb=1.0, torch_peak_mb=4.0 * k,
                 torch_clip_data_mb=2.0, memory="peak RSS") for f, k in ((16, 1), (192, 3))
            for s in long_clip.STAGES]
    table = "\n".join(long_clip.cost_table(rows, argparse.Namespace(steps=1, tune_steps=1, threads=1)))
    assert "| edit | 1.00 | 1.00 | 3.00 | 2.90 | 3.00 | 2.50 |" in table
