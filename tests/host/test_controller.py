"""P2P Controller node on the tiny CLIP in a real ComfyUI."""
import pytest
import torch

from vp2p_dev import devkit as tl


def ctrl_node():
    return tl.pack_nodes.edit.VP2PController


def build(clip, source, target, mode="swap", **kw):
    args = dict(cross_replace=0.2, self_replace=0.5, reweight_words="", reweight_scales="", blend_words="",
                blend_threshold=0.3, blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="")
    args.update(kw)
    return ctrl_node().execute(clip, source, target, mode, **args).result


def test_outputs_are_clip_text_encode(tiny):
    clip = tiny[1]
    spec, src, tgt = build(clip, "a red circle", "a blue circle")
    assert torch.equal(src[0][0], tl.encode(clip, "a red circle")[0][0])
    assert torch.equal(tgt[0][0], tl.encode(clip, "a blue circle")[0][0])
    # the source and empty-prompt embeddings reach the sampler through the inversion only
    assert not hasattr(spec, "uncond") and not hasattr(spec, "source_cond")
    assert src[0][1]["vp2p_text"] == "a red circle" and spec.source_text == "a red circle"
    assert spec.width == src[0][0].shape[-1] == 64
    vc = tl.core.control
    assert isinstance(spec.controller, vc.AttentionReplace)
    assert spec.map_tokens == [("blue", "tgt", [2])]


def test_swap_with_different_word_counts_suggests_refine(tiny):
    with pytest.raises(tl.InputError, match=r"P2P Controller.*refine"):
        build(tiny[1], "a red circle", "a big red circle")
    spec, _, _ = build(tiny[1], "a red circle", "a big red circle", mode="refine")
    assert isinstance(spec.controller, tl.core.control.AttentionRefine)
    assert spec.controller.alphas[2] == 0 and spec.controller.mapper[3] == 2


def test_reweight_errors_and_chaining(tiny):
    vc = tl.core.control
    clip = tiny[1]
    with pytest.raises(tl.InputError, match="reweight_words"):
        build(clip, "a red circle", "a red circle", mode="reweight")
    with pytest.raises(tl.InputError, match="zebra"):
        build(clip, "a red circle", "a red circle", mode="reweight", reweight_words="zebra")
    with pytest.raises(tl.InputError, match="scales"):
        build(clip, "a red circle", "a red circle", mode="reweight", reweight_words="red, circle",
              reweight_scales="1, 2, 3")
    swap, _, _ = build(clip, "a red circle", "a blue circle")
    rw, _, _ = build(clip, "a red circle", "a blue circle", mode="reweight", reweight_words="blue",
                     reweight_scales="2", previous=swap)
    assert isinstance(rw.controller, vc.AttentionReweight) and rw.controller.prev is swap.controller
    p_src, p_tgt = torch.rand(2, 2, 3, 5, 77).softmax(-1).unbind(0)
    want = swap.controller.replace_cross(p_src, p_tgt).clone()
    want[..., 2] *= 2
    assert torch.allclose(rw.controller.replace_cross(p_src, p_tgt), want)
    one, _, _ = build(clip, "a red circle", "a blue circle", mode="reweight", reweight_words="blue",
                      reweight_scales="1.0", previous=swap)
    assert torch.equal(one.controller.replace_cross(p_src, p_tgt), swap.controller.replace_cross(p_src, p_tgt))
    with pytest.raises(tl.InputError, match="same source and target"):
        build(clip, "a red circle", "a green circle", mode="reweight", reweight_words="green", previous=swap)


def test_blend_words(tiny):
    spec, _, _ = build(tiny[1], "a red circle on stripes", "a blue circle on stripes", blend_words="circle")
    lb = spec.controller.local_blend
    assert lb is not None and list(lb.src_tokens) == [3] and list(lb.tgt_tokens) == [3]
    with pytest.raises(tl.InputError, match="neither prompt"):
        build(tiny[1], "a red circle", "a blue circle", blend_words="square")
    with pytest.raises(tl.InputError, match=r"P2P Controller: blend_threshold 1 masks nothing.*below 1"):
        build(tiny[1], "a red circle", "a blue circle", blend_words="circle", blend_threshold=1.0)
    assert build(tiny[1], "a red circle", "a blue circle", blend_words="circle", blend_threshold=0.95)[0] \
        .controller.local_blend.threshold == 0.95


PRESET_SWAP = "swap + reweight + blend (official)"
PRESET_REFINE = "refine + reweight + blend (official)"
PRESET_HARD = "hard edit: cross 0.8 / self 0.7"


def test_presets_carry_the_official_configs(tiny):
    clip = tiny[1]
    vc, sa = tl.core.control, tl.core.seq_aligner
    node = tl.pack_nodes.edit.VP2PController
    inputs = node.GET_SCHEMA().inputs
    by_id = {i.id: i for i in inputs}
    # saved workflows keep loading: the required inputs and their options are unchanged, the preset and
    # blend_maps are optional widgets after them whose defaults are the widgets as set and the
    # reference's local blend
    assert [i.id for i in inputs if not i.optional][-1] == "map_words"
    assert [i.id for i in inputs if i.optional] == ["previous", "preset", "blend_maps", "word_windows"]
    assert by_id["word_windows"].default == ""          # no per-word windows: the edit as before
    assert by_id["blend_maps"].default == by_id["blend_maps"].options[0] == tl.core.prompts.BLEND_BOTH
    assert "blend_maps must be one of" in node.validate_inputs(blend_maps="target")
    assert by_id["mode"].options == ["swap", "refine", "reweight"]
    assert by_id["preset"].options[0] == "custom" and by_id["preset"].default == "custom"
    assert set(by_id["preset"].options) == {"custom", PRESET_SWAP, PRESET_REFINE, PRESET_HARD}
    # as the editor gets it (object_info): the same order and options
    types = node.INPUT_TYPES()
    assert list(types["required"])[-1] == "map_words" and \
        list(types["optional"]) == ["previous", "preset", "blend_maps", "word_windows"]
    assert types["required"]["mode"] == ("COMBO", types["required"]["mode"][1])
    assert types["optional"]["preset"][1]["options"][0] == "custom"
    assert types["optional"]["preset"][1]["default"] == "custom"
    src, tgt = "a man riding a bike", "a man riding a motorbike"
    # swap + reweight + blend: widgets for mode/windows are overridden, empty words default to the changed ones
    spec, _, _ = build(clip, src, tgt, "refine", cross_replace=0.6, self_replace=0.1, preset=PRESET_SWAP)
    c = spec.controller
    assert isinstance(c, vc.AttentionReweight) and isinstance(c.prev, vc.AttentionReplace)
    assert c.cross_window == (0.0, 0.2) and c.self_window == (0.0, 0.5) and spec.mode == "swap+reweight"
    enc = tl.host.text.clip_encoder(clip)
    moto = sa.token_indices(enc, tgt, "motorbike")
    assert torch.equal(c.equalizer[moto], torch.full((len(moto),), 2.0)) and (c.equalizer != 1).sum() == len(moto)
    lb = c.local_blend
    assert lb.threshold == 0.3 and lb.start == 0.2
    assert lb.src_tokens == sa.token_indices(enc, src, "bike") and lb.tgt_tokens == moto
    # what you typed is kept
    spec, _, _ = build(clip, src, tgt, preset=PRESET_SWAP, blend_words="man", reweight_scales="4")
    assert spec.controller.local_blend.src_tokens == sa.token_indices(enc, src, "man")
    assert float(spec.controller.equalizer.max()) == 4.0
    # refine + reweight + blend: the added word is reweighted and blended
    spec, _, _ = build(clip, "a rabbit jumping", "a origami rabbit jumping", preset=PRESET_REFINE)
    c = spec.controller
    assert isinstance(c.prev, vc.AttentionRefine) and c.local_blend.tgt_tokens == \
        sa.token_indices(enc, "a origami rabbit jumping", "origami")
    # hard edit: long windows, swap or refine by word count
    spec, _, _ = build(clip, src, tgt, preset=PRESET_HARD)
    assert spec.controller.cross_window == (0.0, 0.8) and spec.controller.self_window == (0.0, 0.7)
    assert isinstance(spec.controller.prev, vc.AttentionReplace)
    spec, _, _ = build(clip, "a rabbit jumping", "a origami rabbit jumping", preset=PRESET_HARD)
    assert isinstance(spec.controller.prev, vc.AttentionRefine)
    # custom = exactly the widgets as set
    a = build(clip, src, tgt, "swap", cross_replace=0.3, self_replace=0.6, blend_words="bike")[0].controller
    b = build(clip, src, tgt, "swap", cross_replace=0.3, self_replace=0.6, blend_words="bike",
              preset="custom")[0].controller
    assert type(a) is type(b) and torch.equal(a.mapper, b.mapper) and a.cross_window == b.cross_window == (0, 0.3)
    assert a.local_blend.src_tokens == b.local_blend.src_tokens
    # clear errors
    err = tl.InputError
    with pytest.raises(err, match="P2P Controller: preset .*swaps words.*refine preset"):
        build(clip, "a rabbit jumping", "a origami rabbit jumping", preset=PRESET_SWAP)
    with pytest.raises(err, match="no word of the target is new"):
        build(clip, src, src, preset=PRESET_SWAP)


def test_align_preview_follows_the_preset(host):
    route = tl.host.routes
    out = route.align({"source": "a man riding a bike", "target": "a man riding a motorbike", "mode": "refine",
                       "preset": PRESET_SWAP})
    assert out["ok"] and out["mode"].startswith("swap+reweight")
    moto = next(w for w in out["target"] if w["word"] == "motorbike")
    assert moto["scale"] == 2.0 and moto["blend"]
    bad = route.align({"source": "a rabbit", "target": "a origami rabbit", "mode": "swap", "preset": PRESET_SWAP})
    assert not bad["ok"] and "refine preset" in bad["error"]
