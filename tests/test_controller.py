"""P2P Controller node on the tiny CLIP in a real ComfyUI."""
import pytest
import torch

import vp2p_testlib as tl


def ctrl_node():
    return tl.pack("nodes.controller").VP2PController()


def build(clip, source, target, mode="swap", **kw):
    args = dict(cross_replace=0.2, self_replace=0.5, reweight_words="", reweight_scales="", blend_words="",
                blend_threshold=0.3, blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="")
    args.update(kw)
    return ctrl_node().build(clip, source, target, mode, **args)


def test_outputs_are_clip_text_encode(tiny):
    clip = tiny[1]
    spec, src, tgt = build(clip, "a red circle", "a blue circle")
    assert torch.equal(src[0][0], tl.encode(clip, "a red circle")[0][0])
    assert torch.equal(tgt[0][0], tl.encode(clip, "a blue circle")[0][0])
    assert torch.equal(spec.uncond, tl.encode(clip, "")[0][0])
    assert spec.width == src[0][0].shape[-1] == 64
    vc = tl.core("control")
    assert isinstance(spec.controller, vc.AttentionReplace)
    assert spec.map_tokens == [("blue", "tgt", [2])]


def test_swap_with_different_word_counts_suggests_refine(tiny):
    unet_runner = tl.pack("nodes.unet_runner")
    with pytest.raises(unet_runner.NodeInputError, match=r"P2P Controller.*refine"):
        build(tiny[1], "a red circle", "a big red circle")
    spec, _, _ = build(tiny[1], "a red circle", "a big red circle", mode="refine")
    assert isinstance(spec.controller, tl.core("control").AttentionRefine)
    assert spec.controller.alphas[2] == 0 and spec.controller.mapper[3] == 2


def test_reweight_errors_and_chaining(tiny):
    unet_runner = tl.pack("nodes.unet_runner")
    vc = tl.core("control")
    clip = tiny[1]
    with pytest.raises(unet_runner.NodeInputError, match="reweight_words"):
        build(clip, "a red circle", "a red circle", mode="reweight")
    with pytest.raises(unet_runner.NodeInputError, match="zebra"):
        build(clip, "a red circle", "a red circle", mode="reweight", reweight_words="zebra")
    with pytest.raises(unet_runner.NodeInputError, match="scales"):
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
    with pytest.raises(unet_runner.NodeInputError, match="same source and target"):
        build(clip, "a red circle", "a green circle", mode="reweight", reweight_words="green", previous=swap)


def test_blend_words(tiny):
    unet_runner = tl.pack("nodes.unet_runner")
    spec, _, _ = build(tiny[1], "a red circle on stripes", "a blue circle on stripes", blend_words="circle")
    lb = spec.controller.local_blend
    assert lb is not None and list(lb.src_tokens) == [3] and list(lb.tgt_tokens) == [3]
    with pytest.raises(unet_runner.NodeInputError, match="neither prompt"):
        build(tiny[1], "a red circle", "a blue circle", blend_words="square")
