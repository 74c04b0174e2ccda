"""Decoupled Sampler in a real ComfyUI on the tiny model: exact equivalences with ComfyUI's DDIM."""
import pytest
import torch

from vp2p_dev import devkit as tl

FRAMES, H, W, STEPS, CFG = 3, 8, 8, 5, 7.5


def controller(clip, source, target, mode="swap", **kw):
    args = dict(cross_replace=0.2, self_replace=0.5, reweight_words="", reweight_scales="", blend_words="",
                blend_threshold=0.3, blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="")
    args.update(kw)
    return tl.pack_nodes.edit.VP2PController.execute(clip, source, target, mode, **args).result


def sample(model, inv, spec, cfg=CFG, batching="source-first"):
    return tl.pack_nodes.edit.VP2PDecoupledSampler.execute(model, inv, spec, cfg, batching).result


def ksampler(model, noise, positive, negative, steps=STEPS, cfg=CFG):
    import comfy.sample
    lat = torch.zeros_like(noise)
    return comfy.sample.sample(model, noise, steps, cfg, "ddim", "ddim_uniform", positive, negative, lat,
                               seed=0).float()


@pytest.fixture(scope="module")
def noise():
    return torch.randn(FRAMES, 4, H, W, generator=torch.Generator().manual_seed(5))


def test_control_off_is_core_ksampler(tiny, noise):
    model, clip, _ = tiny
    src, tgt = "a red circle", "a blue circle"
    spec, _, tgt_cond = controller(clip, src, tgt, cross_replace=0.0, self_replace=0.0)
    inv = tl.noise_inversion(model, clip, src, noise)
    for batching in ("source-first", "batched"):
        edited, source, _ = sample(model, inv, spec, batching=batching)
        want = ksampler(model, noise, tgt_cond, tl.encode(clip, ""))
        want_src = ksampler(model, noise, tl.encode(clip, src), tl.encode(clip, ""))
        if batching == "source-first":
            assert torch.equal(edited["samples"], want)
            assert torch.equal(source["samples"], want_src)
        else:   # one UNet call for four chunks: same math, different GEMM shapes
            assert (edited["samples"] - want).abs().max() < 1e-4
            assert (source["samples"] - want_src).abs().max() < 1e-4


def test_identical_prompts_full_control_edit_equals_source(tiny, inflated, noise):
    clip = tiny[1]
    text = "a red circle"
    for model in (tiny[0], inflated):
        spec, _, _ = controller(clip, text, text, cross_replace=1.0, self_replace=1.0,
                                controlled_layers="cross+temporal+frame")
        inv = tl.noise_inversion(model, clip, text, noise)   # source null == the target's empty prompt
        edited, source, _ = sample(model, inv, spec)
        assert torch.equal(edited["samples"], source["samples"])


def test_control_changes_the_edit_and_temporal_control_matters(tiny, inflated, noise):
    clip = tiny[1]
    src, tgt = "a red circle", "a blue circle"
    inv = tl.noise_inversion(inflated, clip, src, noise)
    off, _, _ = controller(clip, src, tgt, cross_replace=0.0, self_replace=0.0)
    cross, _, _ = controller(clip, src, tgt, cross_replace=0.8, self_replace=0.0)
    both, _, _ = controller(clip, src, tgt, cross_replace=0.8, self_replace=0.8)
    e_off = sample(inflated, inv, off)[0]["samples"]
    e_cross = sample(inflated, inv, cross)[0]["samples"]
    e_both = sample(inflated, inv, both)[0]["samples"]
    _, s, _ = sample(inflated, inv, both)
    d = lambda a, b: (a - b).abs().mean().item()  # noqa: E731
    assert d(e_cross, e_off) > 1e-4 and d(e_both, e_cross) > 1e-5
    # copying attention from the source pulls the edit towards the source branch
    assert d(e_cross, s["samples"]) < d(e_off, s["samples"])


def test_reweight_scale_one_changes_nothing(tiny, noise):
    model, clip, _ = tiny
    src, tgt = "a red circle", "a blue circle"
    inv = tl.noise_inversion(model, clip, src, noise)
    swap, _, _ = controller(clip, src, tgt)
    rw, _, _ = controller(clip, src, tgt, mode="reweight", reweight_words="blue", reweight_scales="1",
                          previous=swap)
    rw2, _, _ = controller(clip, src, tgt, mode="reweight", reweight_words="blue", reweight_scales="3",
                           previous=swap)
    a = sample(model, inv, swap)[0]["samples"]
    assert torch.equal(sample(model, inv, rw)[0]["samples"], a)
    assert not torch.equal(sample(model, inv, rw2)[0]["samples"], a)


def test_local_blend_keeps_source_outside_mask(tiny, inflated, noise):
    clip = tiny[1]
    src, tgt = "a red circle", "a blue circle"
    inv = tl.noise_inversion(inflated, clip, src, noise)
    spec, _, _ = controller(clip, src, tgt, blend_words="circle", blend_threshold=0.95, blend_start=0.0)
    edited, source, maps = sample(inflated, inv, spec)
    e, s = edited["samples"], source["samples"]
    same = (e == s).all(dim=1)              # [F, h, w]: where the blend kept the source
    assert same.any() and (~same).any()     # a real mask, neither empty nor full
    # one mask per frame: they differ between frames of different content
    assert any(not torch.equal(same[i], same[i + 1]) for i in range(FRAMES - 1))
    assert maps.shape[0] == FRAMES and maps.shape[-1] == 3


def test_blend_maps_source_masks_a_shared_word_by_the_source_alone(tiny, inflated, noise):
    """blend_maps "source where both have the word": the mask of a word both prompts have is the
    source's alone, inside prompt-to-prompt's union of both branches' masks, and outside it every
    frame keeps the source; with no shared blend word the edit is the default's, bit for bit."""
    clip = tiny[1]
    src, tgt = "a red circle", "a blue circle"
    inv = tl.noise_inversion(inflated, clip, src, noise)
    runs = {}
    for maps in tl.core.prompts.BLEND_MAPS:
        spec, _, _ = controller(clip, src, tgt, blend_words="circle", blend_threshold=0.5, blend_start=0.0,
                                blend_maps=maps)
        with tl.recording_blend_mask(spec) as seen:
            edited, source, _ = sample(inflated, inv, spec)
        runs[maps] = (seen["mask"], edited["samples"], source["samples"])
    (m_both, _, s_both), (m_src, e_src, s_src) = runs[tl.core.prompts.BLEND_BOTH], runs[tl.core.prompts.BLEND_SOURCE]
    assert torch.equal(s_both, s_src)                        # the source branch does not depend on it
    assert not (m_src & ~m_both).any() and (m_both & ~m_src).any()
    keep = ~m_src.expand_as(e_src)
    assert torch.equal(e_src[keep], s_src[keep])
    edits = []                                               # "red" is in the source only: nothing shared
    for maps in tl.core.prompts.BLEND_MAPS:
        spec, _, _ = controller(clip, src, tgt, blend_words="red, blue", blend_start=0.0, blend_maps=maps)
        edits.append(sample(inflated, inv, spec)[0]["samples"])
    assert torch.equal(edits[0], edits[1])


def test_attention_map_image_one_panel_per_frame(tiny, noise):
    model, clip, _ = tiny
    spec, _, _ = controller(clip, "a red circle", "a blue circle", map_words="blue, circle")
    inv = tl.noise_inversion(model, clip, "a red circle", noise)
    _, _, maps = sample(model, inv, spec)
    assert maps.shape[0] == FRAMES and maps.shape[2] == 2 * maps.shape[1]   # two words side by side
    assert maps.min() >= 0 and maps.max() <= 1 and maps.amax(dim=(1, 2, 3)).min() > 0.5
    # the store keeps only the words' columns, and the image is written a few frames at a time:
    # the same pixels as all frames at once
    guider = tl.host.sampling.decoupled_guider(model, inv, spec, CFG)
    guider.run()
    store, res = guider.store, guider.resolution
    assert store.tokens == sorted({t for _, _, toks in spec.map_tokens for t in toks})
    image = tl.host.sampling.attention_map_image
    whole = image(store, spec, res[0], guider.latent_hw, FRAMES, chunk=FRAMES)
    assert torch.equal(image(store, spec, res[0], guider.latent_hw, FRAMES, chunk=2), whole)
    assert torch.equal(whole, maps)


def test_bad_inputs(tiny, inflated, noise, models_dir):
    model, clip, _ = tiny
    src = "a red circle"
    spec, _, _ = controller(clip, src, "a blue circle")
    inv = tl.noise_inversion(inflated, clip, src, noise)
    with pytest.raises(tl.InputError, match="Decoupled Sampler.*another model"):
        sample(model, inv, spec)
    other, _, _ = controller(clip, "a green square", "a blue square")
    with pytest.raises(tl.InputError, match="source prompt"):
        sample(inflated, inv, other)
    wide = tl.load_ckpt(tl.make_tiny_checkpoint(models_dir, "vp2p_wide.safetensors", seed=3, context_dim=32))
    spec_w, _, _ = controller(wide[1], src, "a blue circle")
    with pytest.raises(tl.InputError, match="width"):
        sample(model, inv, spec_w)
    with pytest.raises(tl.InputError, match="cfg"):
        sample(inflated, inv, spec, cfg=0.0)


def test_source_branch_is_the_inversion_reconstruction(tiny, inflated):
    """Real inversion (null-text) -> Decoupled Sampler: the source LATENT is bit-identical to the
    inversion's reconstruction LATENT, with the edit running alongside."""
    clip = tiny[1]
    src = "a red circle"
    video = tl.video_latent(FRAMES, H, W, seed=3)
    inv_node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    with torch.inference_mode():
        inv, recon = inv_node.execute(inflated, video, tl.encode(clip, src), tl.encode(clip, ""), 4, CFG,
                                     "null-text", 3).result
    spec, _, _ = controller(clip, src, "a blue circle", blend_words="circle")
    edited, source, _ = sample(inflated, inv, spec, batching="source-first")
    assert torch.equal(source["samples"], recon["samples"])
    assert not torch.equal(edited["samples"], source["samples"])
    _, source_b, _ = sample(inflated, inv, spec, batching="batched")
    assert (source_b["samples"] - recon["samples"]).abs().max() < 1e-4


def test_attention_map_image_places_attention_where_it_is():
    """Store -> map image keeps the spatial layout (rows/columns of a non-square latent, per
    frame, per branch): a token attended at one cell per frame lights exactly that cell."""
    vc = tl.core.control
    sampler = tl.host.sampling
    frames, heads, (h, w), tok = 3, 2, (4, 6), 5
    cells = [(0, 5), (3, 1), (2, 3)]                     # (row, col) per frame
    p_src = torch.full((frames, heads, h * w, 77), 1.0 / 77)
    p_tgt = p_src.clone()
    for f, (r, c) in enumerate(cells):
        p_tgt[f, :, r * w + c, tok] = 0.9
    store = vc.AttentionStore()
    store.add("k", p_src, p_tgt)
    store.end_step()

    class Spec:
        map_tokens = [("word", "tgt", [tok])]
    img = sampler.attention_map_image(store, Spec, h * w, (h, w), frames, scale=4)
    assert img.shape == (frames, h * 4, w * 4, 3)
    for f, (r, c) in enumerate(cells):
        heat = img[f, ..., 0].clone()
        y, x = divmod(int(heat.argmax()), w * 4)
        assert (y // 4, x // 4) == (r, c), f"frame {f}: peak at cell {(y // 4, x // 4)}, not {(r, c)}"
        heat[max(r - 1, 0) * 4:(r + 2) * 4, max(c - 1, 0) * 4:(c + 2) * 4] = 0
        assert heat.max() < 0.05, f"frame {f}: attention outside its cell"


def test_local_blend_at_a_latent_size_not_divisible_by_4(tiny, inflated):
    """33x33 latent: the UNet's downsampler rounds up (17x17 maps at the second level), so the
    blend must read the 289-token maps; a floor-divided 16x16 resolution never matched and the
    blend was silently skipped."""
    clip = tiny[1]
    src, tgt = "a red circle", "a blue circle"
    noise33 = torch.randn(2, 4, 33, 33, generator=torch.Generator().manual_seed(6))
    inv = tl.noise_inversion(inflated, clip, src, noise33, steps=4)
    spec, _, _ = controller(clip, src, tgt, blend_words="circle", blend_threshold=0.95, blend_start=0.0)
    edited, source, maps = sample(inflated, inv, spec)
    same = (edited["samples"] == source["samples"]).all(dim=1)
    assert same.any() and (~same).any()          # the blend ran: a real mask, neither empty nor full
    assert maps.shape[1:3] == (33 * 8, 33 * 8) and maps.amax() > 0.5
    vc = tl.core.control
    assert vc.resolution_of(17 * 17, (33, 33)) == (17, 17)
    assert vc.resolution_of(14 * 24, (54, 96)) == (14, 24)       # 432x768 px on SD1.5: 54 -> 27 -> 14
    assert vc.pick_blend_resolution({33 * 33, 17 * 17, 9 * 9}, (33, 33)) == (17 * 17, (17, 17))


def test_a_blend_that_cannot_run_is_an_error(tiny, inflated, noise, monkeypatch):
    clip = tiny[1]
    vc = tl.core.control
    src = "a red circle"
    inv = tl.noise_inversion(inflated, clip, src, noise)
    spec, _, _ = controller(clip, src, "a blue circle", blend_words="circle", blend_start=0.0)
    monkeypatch.setattr(vc.AttentionStore, "add", lambda self, *args: None)   # no maps produced
    with pytest.raises(tl.InputError, match="Decoupled Sampler: the local blend cannot run.*blend_words"):
        sample(inflated, inv, spec)


def _count_chunks(model):
    calls = []
    m = model.clone()
    previous = m.model_options.get("model_function_wrapper")

    def spy(apply_model, args):
        calls.append(len(args["cond_or_uncond"]))
        return previous(apply_model, args) if previous else apply_model(args["input"], args["timestep"], **args["c"])
    m.set_model_unet_function_wrapper(spy)
    return m, calls


@pytest.mark.parametrize("batching", ["source-first", "batched"])
def test_direct_inversion_source_stays_on_the_trajectory(tiny, inflated, batching):
    clip = tiny[1]
    src = "a red circle"
    video = tl.video_latent(FRAMES, H, W, seed=3)
    inv_node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    m, calls = _count_chunks(inflated)
    with torch.inference_mode():
        inv, recon = inv_node.execute(m, video, tl.encode(clip, src), tl.encode(clip, ""), 4, CFG,
                                     "direct-inversion", 10).result
    spec, _, _ = controller(clip, src, "a blue circle", blend_words="circle", blend_threshold=0.95, blend_start=0.0)
    calls.clear()
    edited, source, _ = sample(m, inv, spec, batching=batching)
    assert torch.equal(source["samples"], recon["samples"])
    assert (source["samples"] - video["samples"]).abs().max() < 1e-5      # the sampler applied the trajectory correction
    # no source uncond evaluation: 3 chunks per step (source cond, target uncond, target cond)
    assert sum(calls) == 3 * 4
    e, s = edited["samples"], source["samples"]
    same = (e == s).all(dim=1)
    assert same.any() and (~same).any()                                 # outside the mask: the input itself


def test_fast_mode_source_branch_is_guidance_one(tiny, inflated):
    clip = tiny[1]
    src = "a red circle"
    video = tl.video_latent(FRAMES, H, W, seed=3)
    inv_node = tl.pack_nodes.inversion.VP2PSharedNullTextInvert
    with torch.inference_mode():
        inv, recon = inv_node.execute(inflated, video, tl.encode(clip, src), tl.encode(clip, ""), 4, CFG, "fast", 10).result
    m, calls = _count_chunks(inflated)
    spec, _, _ = controller(clip, src, "a blue circle")
    _, source, _ = sample(m, inv, spec)
    assert torch.equal(source["samples"], recon["samples"]) and sum(calls) == 3 * 4
