"""Per-word cross-attention windows of the P2P Controller (word_windows), on the tiny model in a real
ComfyUI: a word window equal to the global one is bit-identical to none; a different one changes
exactly its tokens at exactly its steps; bad entries are errors naming the node and the fix."""
import pytest
import torch

from vp2p_dev import devkit as tl

FRAMES, H, W, STEPS, CFG = 2, 8, 8, 5, 7.5
SRC, TGT = "a red circle", "a blue circle"      # 'blue' is token 2


def controller(clip, source=SRC, target=TGT, mode="swap", **kw):
    args = dict(cross_replace=0.2, self_replace=0.5, reweight_words="", reweight_scales="", blend_words="",
                blend_threshold=0.3, blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="")
    args.update(kw)
    return tl.pack_nodes.edit.VP2PController.execute(clip, source, target, mode, **args).result[0]


def edit(model, inv, spec):
    return tl.pack_nodes.edit.VP2PDecoupledSampler.execute(model, inv, spec, CFG, "source-first").result[0]["samples"]


@pytest.fixture(scope="module")
def inv(tiny):
    noise = torch.randn(FRAMES, 4, H, W, generator=torch.Generator().manual_seed(11))
    return tl.noise_inversion(tiny[0], tiny[1], SRC, noise, steps=STEPS)


def test_word_window_equal_to_the_global_one_changes_nothing(tiny, inv):
    model, clip, _ = tiny
    plain = edit(model, inv, controller(clip, cross_replace=0.4))
    same = controller(clip, cross_replace=0.4, word_windows="blue:0.4, circle:0-0.4")
    assert same.controller.word_windows == (((2,), (0.0, 0.4)), ((3,), (0.0, 0.4)))
    assert torch.equal(edit(model, inv, same), plain)
    # the same through a preset's swap + reweight chain (the reweight's alpha wraps the swap)
    preset = dict(preset="swap + reweight + blend (official)")
    a = edit(model, inv, controller(clip, **preset))
    assert torch.equal(edit(model, inv, controller(clip, word_windows="blue:0.2", **preset)), a)
    # and a window of its own does change the edit
    assert not torch.equal(edit(model, inv, controller(clip, cross_replace=0.4, word_windows="blue:1")), plain)


def test_a_word_window_changes_exactly_its_tokens_at_its_steps(tiny):
    clip = tiny[1]
    glob = controller(clip, cross_replace=0.2).controller              # step 0 of 5
    longer = controller(clip, cross_replace=0.2, word_windows="blue:0.6").controller   # blue: steps 0-2
    late = controller(clip, cross_replace=0.2, word_windows="blue:0.4-0.8").controller  # blue: steps 2-3
    g = torch.Generator().manual_seed(3)
    p_src, p_tgt = torch.rand(2, 2, 3, 5, 77, generator=g).softmax(-1).unbind(0)
    full = glob.edit("cross", p_src, p_tgt, 0, STEPS)
    assert torch.equal(full, glob.replace_cross(p_src, p_tgt)) and not torch.equal(full, p_tgt)
    for step in range(STEPS):
        assert longer.edits("cross", step, STEPS) == (step < 3)
        assert late.edits("cross", step, STEPS) == (step in (0, 2, 3))
    assert torch.equal(longer.edit("cross", p_src, p_tgt, 0, STEPS), full)
    for step in (1, 2):    # only 'blue' copies the source; every other column is the target's own
        out = longer.edit("cross", p_src, p_tgt, step, STEPS)
        assert torch.equal(out[..., 2], full[..., 2])
        keep = torch.ones(77, dtype=torch.bool)
        keep[2] = False
        assert torch.equal(out[..., keep], p_tgt[..., keep])
    out = late.edit("cross", p_src, p_tgt, 0, STEPS)          # blue closed, the rest open
    assert torch.equal(out[..., 2], p_tgt[..., 2]) and torch.equal(out[..., :2], full[..., :2])
    # a zero-length global window with a word window is not an identity controller
    assert not controller(clip, cross_replace=0.0, self_replace=0.0, word_windows="blue:0.2").controller.is_identity()
    assert controller(clip, cross_replace=0.0, self_replace=0.0, word_windows="blue:0").controller.is_identity()


@pytest.mark.parametrize("entry, match", [
    ("zebra:0.4", r"P2P Controller: word_windows word 'zebra' is not in the target prompt.*name a word"),
    ("red:0.4", r"'red' is not in the target prompt"),          # source-only word: name the new word
    ("blue", r"P2P Controller: word_windows entry 'blue' has no window: write 'word:end'"),
    ("blue:x", r"window must be numbers"),
    ("blue:1.5", r"0 <= start <= end <= 1"),
    ("blue:0.6-0.2", r"0 <= start <= end <= 1"),
])
def test_bad_word_windows_name_the_node_and_the_fix(tiny, entry, match):
    with pytest.raises(tl.InputError, match=match):
        controller(tiny[1], word_windows=entry)


def test_align_preview_shows_the_word_windows(host):
    route = tl.host.routes
    out = route.align({"source": "a man riding a bike", "target": "a man riding a motorbike", "mode": "swap",
                       "cross_replace": 0.3, "word_windows": "motorbike:0.1-0.6"})
    assert out["ok"] and out["cross_window"] == [0.0, 0.3]
    assert [w.get("window") for w in out["target"]] == [None, None, None, None, [0.1, 0.6]]
    bad = route.align({"source": "a man riding a bike", "target": "a man riding a motorbike", "mode": "swap",
                       "word_windows": "bike:0.4"})
    assert not bad["ok"] and "'bike' is not in the target prompt" in bad["error"]
    # the preset's window is the global one the preview shows
    pre = route.align({"source": "a rabbit jumping", "target": "a origami rabbit jumping", "mode": "swap",
                       "preset": "hard edit: cross 0.8 / self 0.7", "cross_replace": 0.2})
    assert pre["ok"] and pre["cross_window"] == [0.0, 0.8]
