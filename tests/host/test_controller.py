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


PRESET_SWAP = "word swap (car-drive)"
PRESET_SWAP_STRONG = "word swap, strong reweight (man-motor)"
PRESET_REFINE = "add an attribute (rabbit-jump, tiger-forest)"
PRESET_REFINE_STRONG = "add an attribute, strong (penguin-run)"
PRESET_STYLE = "style, no blend (bird-forest)"
# The official Video-P2P edit configs (configs/*-p2p.yaml), written in from the configs: prompts,
# alignment, windows (cross, self), reweighted words and their scales, blend words (source, target).
OFFICIAL = {
    PRESET_SWAP: ("a car is moving on the road", "a car is moving on the railway", "swap", (0.2, 0.5),
                  {"railway": 2.0}, (["road"], ["railway"])),
    PRESET_SWAP_STRONG: ("a man is driving a motorbike in the forest",
                         "a Spider-Man is driving a motorbike in the forest", "swap", (0.2, 0.5),
                         {"Spider-Man": 4.0}, (["man"], ["Spider-Man"])),
    PRESET_REFINE: ("a rabbit is jumping on the grass", "a origami rabbit is jumping on the grass", "refine",
                    (0.2, 0.5), {"origami": 2.0}, (["rabbit"], ["rabbit"])),
    PRESET_REFINE_STRONG: ("a penguin is running on the ice", "a crochet penguin is running on the ice", "refine",
                           (0.2, 0.5), {"crochet": 4.0}, (["penguin"], ["penguin"])),
    PRESET_STYLE: ("a bird is flying in the forest", "children drawing of a bird is flying in the forest",
                   "refine", (0.8, 0.7), {"children": 5.0, "drawing": 2.0}, None),
}
OLD_PRESETS = {"swap + reweight + blend (official)": PRESET_SWAP,
               "refine + reweight + blend (official)": PRESET_REFINE,
               "hard edit: cross 0.8 / self 0.7": PRESET_STYLE}


def test_presets_match_the_official_edit_configs(tiny):
    clip = tiny[1]
    vc, sa = tl.core.control, tl.core.seq_aligner
    enc = tl.host.text.clip_encoder(clip)
    assert set(tl.core.prompts.PRESETS) == {"custom", *OFFICIAL}
    for preset, (src, tgt, base, windows, scales, blend) in OFFICIAL.items():
        c = build(clip, src, tgt, "swap", cross_replace=0.6, self_replace=0.1, preset=preset)[0].controller
        assert isinstance(c, vc.AttentionReweight), preset
        assert isinstance(c.prev, vc.AttentionReplace if base == "swap" else vc.AttentionRefine), preset
        assert (c.cross_window, c.self_window) == ((0.0, windows[0]), (0.0, windows[1])), preset
        want = torch.ones_like(c.equalizer)
        for word, scale in scales.items():
            want[sa.token_indices(enc, tgt, word)] = scale
        assert torch.equal(c.equalizer, want), preset
        if blend is None:
            assert c.local_blend is None, preset
        else:
            lb = c.local_blend
            assert (lb.threshold, lb.start) == (0.3, 0.2), preset
            # the positions the mask reads (a word may be found in both prompts: "man" in "Spider-Man")
            assert set(lb.src_tokens) == {t for w in blend[0] for t in sa.token_indices(enc, src, w)}, preset
            assert set(lb.tgt_tokens) == {t for w in blend[1] for t in sa.token_indices(enc, tgt, w)}, preset
    # workflows saved with the old preset names load and get today's preset of the same config
    node = tl.pack_nodes.edit.VP2PController
    for old, new in OLD_PRESETS.items():
        assert node.validate_inputs(preset=old) is True
        src, tgt = OFFICIAL[new][:2]
        a = build(clip, src, tgt, preset=old)[0].controller
        b = build(clip, src, tgt, preset=new)[0].controller
        assert torch.equal(a.equalizer, b.equalizer) and a.cross_window == b.cross_window
    assert "preset must be one of" in node.validate_inputs(preset="hard edit")


def test_preset_and_optional_inputs_keep_saved_workflows_loading(tiny):
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
    assert set(by_id["preset"].options) == {"custom", *OFFICIAL}
    # as the editor gets it (object_info): the same order and options
    types = node.INPUT_TYPES()
    assert list(types["required"])[-1] == "map_words" and \
        list(types["optional"]) == ["previous", "preset", "blend_maps", "word_windows"]
    assert types["required"]["mode"] == ("COMBO", types["required"]["mode"][1])
    assert types["optional"]["preset"][1]["options"][0] == "custom"
    assert types["optional"]["preset"][1]["default"] == "custom"
    src, tgt = "a man riding a bike", "a man riding a motorbike"
    # a preset overrides the widgets for mode/windows; what you typed is kept
    spec, _, _ = build(clip, src, tgt, "refine", cross_replace=0.6, self_replace=0.1, preset=PRESET_SWAP)
    assert spec.mode == "swap+reweight" and spec.controller.cross_window == (0.0, 0.2)
    enc = tl.host.text.clip_encoder(clip)
    spec, _, _ = build(clip, src, tgt, preset=PRESET_SWAP, blend_words="man", reweight_scales="4")
    assert spec.controller.local_blend.src_tokens == sa.token_indices(enc, src, "man")
    assert float(spec.controller.equalizer.max()) == 4.0
    with pytest.raises(tl.InputError, match="set blend_words to the object's noun"):
        build(clip, "a rabbit", "a rabbit origami", preset=PRESET_REFINE)
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
