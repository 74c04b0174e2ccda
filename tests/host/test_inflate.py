"""Inflate T2S Model: frame attention, temporal attention and video norm, in a real ComfyUI."""
import pytest
import torch

from vp2p_dev import comfy_host
from vp2p_dev import devkit as tl


def _inflate(model, temporal=True, video_norm=True, chunk=0, seed=0):
    return tl.host.inflation.inflate(model, temporal, video_norm, chunk, seed)


def _predict(model, cond, latent, sigma=3.0, extra=None, chunks=1):
    with torch.inference_mode():
        r = tl.UNetRunner(model)
        x = r.to_model_space(latent)
        outs = r.denoise(x, torch.tensor(sigma), [cond] * chunks, [0, 1][:chunks] if chunks <= 2 else [0] * chunks,
                         extra)
        return torch.cat(outs).clone()


@pytest.fixture(scope="module")
def cond(tiny):
    return tl.encode(tiny[1], "a red circle moving right")[0][0]


# ----------------------------------------------------------------------------- vp2p_core
def _naive_frame_attention(q, k, v, frames, heads):
    att = tl.core.attention
    n = q.shape[0] // frames
    out = torch.empty_like(q)
    for c in range(n):
        for f in range(frames):
            r = c * frames + f
            out[r:r + 1] = att.sdpa_attention(q[r:r + 1], k[c * frames:c * frames + 1], v[c * frames:c * frames + 1], heads)
    return out


def test_core_frame_attention_chunks_and_reference():
    att = tl.core.attention
    g = torch.Generator().manual_seed(0)
    frames, n, tokens, inner, heads = 5, 2, 12, 16, 2
    q, k, v = (torch.randn(n * frames, tokens, inner, generator=g, dtype=torch.float64) for _ in range(3))
    ref = _naive_frame_attention(q, k, v, frames, heads)
    full = att.frame_attention(q, k, v, frames, heads, att.sdpa_attention, chunk=0)
    assert torch.allclose(full, ref, atol=1e-12, rtol=0)
    for chunk in (1, 2, 3, 5, 7):
        out = att.frame_attention(q, k, v, frames, heads, att.sdpa_attention, chunk=chunk)
        assert torch.allclose(out, full, atol=1e-12, rtol=0), chunk
    # one frame: exactly the attention function's own call
    calls = []
    fn = lambda *a: calls.append(a) or att.sdpa_attention(*a)  # noqa: E731
    assert torch.equal(att.frame_attention(q[:2], k[:2], v[:2], 1, heads, fn), att.sdpa_attention(q[:2], k[:2], v[:2], heads))
    assert calls[0][0] is q[:2] or torch.equal(calls[0][0], q[:2])


def test_core_frame0_is_the_key_value_source():
    att = tl.core.attention
    g = torch.Generator().manual_seed(1)
    frames, tokens, inner, heads = 4, 9, 8, 2
    q, k, v = (torch.randn(2 * frames, tokens, inner, generator=g) for _ in range(3))
    base = att.frame_attention(q, k, v, frames, heads)
    k2, v2 = k.clone(), v.clone()
    others = [r for r in range(2 * frames) if r % frames]
    k2[others] += torch.randn(k2[others].shape, generator=g)
    v2[others] += torch.randn(v2[others].shape, generator=g)
    assert torch.equal(att.frame_attention(q, k2, v2, frames, heads), base)
    k3 = k.clone()
    k3[frames] += torch.randn(k3[frames].shape, generator=g)  # frame 0 of the second video
    out = att.frame_attention(q, k3, v, frames, heads)
    assert torch.equal(out[:frames], base[:frames])
    assert all(not torch.allclose(out[r], base[r]) for r in range(frames, 2 * frames))
    k0, v0 = att.first_frame_kv(k, v, frames)
    assert torch.equal(k0[frames + 3], k[frames]) and torch.equal(v0[2], v[0])


def test_core_frames_in_batch_layout():
    att = tl.core.attention
    assert att.frames_in_batch(16, {"cond_or_uncond": [1, 0]}) == 8
    assert att.frames_in_batch(16, {"cond_or_uncond": [0, 1], "vp2p_frames": 4}) == 4
    assert att.frames_in_batch(6, {}) == 6
    with pytest.raises(ValueError, match="multiple"):
        att.frames_in_batch(7, {"cond_or_uncond": [0, 1]})


def test_core_temporal_attention_zero_init_and_set_semantics():
    att = tl.core.attention
    g = torch.Generator().manual_seed(2)
    t = att.TemporalAttention(16, 2, 8).init_weights(torch.Generator().manual_seed(0))
    x = torch.randn(2 * 3, 5, 16, generator=g)
    assert torch.equal(t(x, 3), x)  # zero output projection: the identity, exactly
    with torch.no_grad():
        t.to_out.weight.normal_(generator=g)
    y = t(x, 3)
    assert not torch.allclose(y, x)
    # no positional encoding: permuting the frames of a video permutes the output
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    assert torch.allclose(t(x[perm], 3), y[perm], atol=1e-6)
    # attention is across frames only: the two videos do not see each other
    x2 = x.clone()
    x2[3:] += 1.0
    assert torch.equal(t(x2, 3)[:3], y[:3])

    class Ctx:
        def __init__(self):
            self.seen = []

        def wants(self, kind, key, extra_options=None):
            return True

        def attend(self, kind, key, q, k, v, heads, extra_options, base=None):
            self.seen.append((kind, key, q.shape, k.shape, heads))
            return att.sdpa_attention(q, k, v, heads)
    ctx = Ctx()
    assert torch.allclose(t(x, 3, control=ctx, key=("input", 1, 0)), y, atol=1e-6)
    assert ctx.seen == [("temporal", ("input", 1, 0), (2 * 5, 3, 16), (2 * 5, 3, 16), 2)]
    a = att.TemporalAttention(16, 2, 8).init_weights(torch.Generator().manual_seed(5))
    b = att.TemporalAttention(16, 2, 8).init_weights(torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_core_video_group_norm():
    norm = tl.core.norm
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(8, generator=g), torch.randn(8, generator=g)
    x = torch.randn(2 * 3, 8, 4, 4, generator=g, dtype=torch.float64)
    out = norm.video_group_norm(x, 3, 4, w.double(), b.double(), 1e-5)
    # reference: statistics over (channels of the group, frames, h, w) of each video
    xv = x.reshape(2, 3, 4, 2, 4, 4)
    mean = xv.mean(dim=(1, 3, 4, 5), keepdim=True)
    var = xv.var(dim=(1, 3, 4, 5), unbiased=False, keepdim=True)
    ref = ((xv - mean) / torch.sqrt(var + 1e-5)).reshape(6, 8, 4, 4) * w.double()[:, None, None] + b.double()[:, None, None]
    assert torch.allclose(out, ref, atol=1e-10)
    gn = torch.nn.functional.group_norm
    assert torch.equal(norm.video_group_norm(x, 1, 4, w.double(), b.double()), gn(x, 4, w.double(), b.double()))
    same = x[:1].repeat(3, 1, 1, 1)
    assert torch.allclose(norm.video_group_norm(same, 3, 4), gn(same, 4), atol=1e-10)

    cls = type("VN", (norm.VideoNormMixin, torch.nn.GroupNorm), {})
    m = cls(4, 8)
    with pytest.raises(norm.FramesUnknownError, match="frame count"):
        m(x.float())
    with norm.video_frames(3):
        assert torch.allclose(m(x.float()), norm.video_group_norm(x.float(), 3, 4, m.weight, m.bias), atol=1e-6)
    assert norm.current_frames() is None


# ----------------------------------------------------------------------------- equivalences in the UNet
@pytest.mark.parametrize("temporal,video_norm", [(True, True), (False, False), (True, False)])
def test_one_frame_is_exactly_the_image_model(tiny, cond, temporal, video_norm):
    model = tiny[0]
    latent = tl.video_latent(1, 8, 8, seed=4)["samples"]
    base = _predict(model, cond, latent, chunks=2)
    inflated = _inflate(model, temporal, video_norm)
    assert torch.equal(_predict(inflated, cond, latent, chunks=2), base)


@pytest.mark.parametrize("frames", [2, 3, 5])
@pytest.mark.parametrize("video_norm", [False, True])
def test_identical_frames_equal_the_image_model(tiny, cond, frames, video_norm):
    model = tiny[0]
    latent = tl.video_latent(frames, 8, 8, seed=5, identical=True)["samples"]
    base = _predict(model, cond, latent, chunks=2)
    out = _predict(_inflate(model, True, video_norm), cond, latent, chunks=2)
    assert (out - base).abs().max() <= 1e-6


def test_chunked_frame_attention_equals_unchunked(tiny, cond):
    latent = tl.video_latent(5, 8, 8, seed=6)["samples"]
    full = _predict(_inflate(tiny[0], chunk=0), cond, latent, chunks=2)
    for chunk in (1, 2):
        out = _predict(_inflate(tiny[0], chunk=chunk), cond, latent, chunks=2)
        assert (out - full).abs().max() <= 1e-6, chunk
    assert not torch.allclose(full, _predict(tiny[0], cond, latent, chunks=2), atol=1e-4)


def _attn1_outputs(model, cond, latent):
    rec = {}
    m = model.clone()

    def record(n, extra_options):
        rec.setdefault((extra_options["block"][0], extra_options["block"][1], extra_options["block_index"]), n.clone())
        return n
    m.set_model_attn1_output_patch(record)
    _predict(m, cond, latent)
    return rec[("input", 1, 0)]


def test_frame0_is_the_key_value_source_in_the_unet(tiny, cond):
    # video norm off: before the first transformer block every layer is per-frame
    inflated = _inflate(tiny[0], True, False)
    x = tl.video_latent(4, 8, 8, seed=7)["samples"]
    base = _attn1_outputs(inflated, cond, x)
    x_others = x.clone()
    x_others[1:] = torch.randn(x_others[1:].shape, generator=torch.Generator().manual_seed(8))
    out = _attn1_outputs(inflated, cond, x_others)
    assert torch.equal(out[0], base[0])
    assert not torch.allclose(out[1:], base[1:])
    x_first = x.clone()
    x_first[0] += 0.5
    out = _attn1_outputs(inflated, cond, x_first)
    assert all(not torch.allclose(out[f], base[f], atol=1e-5) for f in range(4))
    # the image model: changing frame 0 leaves the other frames' self-attention alone
    img = _attn1_outputs(tiny[0], cond, x)
    assert torch.equal(_attn1_outputs(tiny[0], cond, x_first)[1:], img[1:])


def test_control_hooks_see_the_contract_shapes(tiny, cond):
    att = tl.core.attention
    inflated = _inflate(tiny[0])
    frames = 3
    latent = tl.video_latent(frames, 8, 8, seed=9)["samples"]

    class Ctx:
        seen = []

        def wants(self, kind, key, extra_options=None):
            return kind in ("frame", "temporal")

        def attend(self, kind, key, q, k, v, heads, extra_options, base=None):
            self.seen.append((kind, key, tuple(q.shape), tuple(k.shape)))
            if kind == "frame":
                n = q.shape[0] // frames
                k0 = k.reshape(n, frames, *k.shape[1:])
                assert torch.equal(k0, k0[:, :1].expand_as(k0))  # frame 0's keys, broadcast
            return att.sdpa_attention(q, k, v, heads)

    ctx = Ctx()
    ref = _predict(inflated, cond, latent, chunks=2)
    out = _predict(inflated, cond, latent, extra={"vp2p_control": ctx}, chunks=2)
    assert (out - ref).abs().max() < 1e-4
    kinds = {(k, key) for k, key, _, _ in ctx.seen}
    blocks = tl.host.inflation.inflation_info(inflated)["blocks"]
    assert kinds == {(kind, tuple(key)) for key in blocks.values() for kind in ("frame", "temporal")}
    for kind, key, qs, ks in ctx.seen:
        if kind == "frame":
            assert qs[0] == 2 * frames and qs == ks
        else:
            assert qs[1] == frames and qs[0] % 2 == 0 and qs == ks


def test_existing_attn1_patch_is_composed_with_frame0_kv(tiny, cond):
    seen = []

    def other_patch(q, k, v, extra_options):
        seen.append((k.clone(), v.clone()))
        return tl.core.attention.sdpa_attention(q, k, v, extra_options["n_heads"])
    m = tiny[0].clone()
    m.set_model_attn1_replace(other_patch, "input", 1)
    frames = 3
    inflated = _inflate(m)
    _predict(inflated, cond, tl.video_latent(frames, 8, 8, seed=10)["samples"])
    assert len(seen) == 1
    k, v = seen[0]
    k = k.reshape(1, frames, *k.shape[1:])
    assert torch.equal(k, k[:, :1].expand_as(k))


def test_inflate_leaves_the_input_model_alone(tiny, cond):
    model = tiny[0]
    latent = tl.video_latent(4, 8, 8, seed=11)["samples"]
    before = _predict(model, cond, latent)
    opts = repr(model.model_options)
    a = _inflate(model, True, True)
    b = _inflate(model, False, False, chunk=1)
    out_a = _predict(a, cond, latent)
    out_b = _predict(b, cond, latent)
    assert not torch.allclose(out_a, out_b)
    assert torch.equal(_predict(model, cond, latent), before)
    assert model.object_patches == {} and repr(model.model_options) == opts and model.patches == {}
    assert torch.equal(_predict(a, cond, latent), out_a)
    inf = tl.host.inflation
    assert inf.is_inflated(a) and not inf.is_inflated(model)
    # once unloaded (patches removed), nothing of the inflation is left on ComfyUI's modules
    import comfy.model_management
    from comfy.ldm.modules.attention import BasicTransformerBlock
    comfy.model_management.unload_all_models()
    for name, mod in model.model.diffusion_model.named_modules():
        assert "vp2p" not in name
        if isinstance(mod, BasicTransformerBlock):
            assert type(mod) is BasicTransformerBlock
    with pytest.raises(tl.InputError, match="already inflated"):
        _inflate(a)


# ----------------------------------------------------------------------------- executor
def _ksampler_graph(ckpt, frames, inflate=None, seed=3):
    g = tl.core_graph(ckpt, seed=seed, steps=3, batch=frames)
    del g["6"]
    g["7"]["inputs"]["filename_prefix"] = "vp2p_test/inflate"
    if inflate is not None:
        g["10"] = {"class_type": "VP2PInflateT2SModel",
                   "inputs": dict({"model": ["1", 0], "temporal_attention": True, "video_norm": True,
                                   "frame_chunk": 0, "seed": 0}, **inflate)}
        g["5"]["inputs"]["model"] = ["10", 0]
    return g


def test_ksampler_runs_inflated_model_through_the_executor(tiny_ckpt):
    run = comfy_host.run_prompt
    plain1 = run(_ksampler_graph(tiny_ckpt, 1), outputs=["5"])["5"][0]["samples"]
    infl1 = run(_ksampler_graph(tiny_ckpt, 1, {}), outputs=["5"])["5"][0]["samples"]
    assert torch.equal(infl1, plain1)

    plain8 = run(_ksampler_graph(tiny_ckpt, 8), outputs=["5"])["5"][0]["samples"]
    a = run(_ksampler_graph(tiny_ckpt, 8, {}), outputs=["5"])["5"][0]["samples"]
    b = run(_ksampler_graph(tiny_ckpt, 8, {"video_norm": False, "frame_chunk": 3}), outputs=["5"])["5"][0]["samples"]
    assert a.shape == (8, 4, 8, 8) and torch.isfinite(a).all()
    assert not torch.allclose(a, b) and not torch.allclose(a, plain8)
    # settings of one prompt never reach another: re-running each gives the same result
    assert torch.equal(run(_ksampler_graph(tiny_ckpt, 8), outputs=["5"])["5"][0]["samples"], plain8)
    assert torch.equal(run(_ksampler_graph(tiny_ckpt, 8, {"video_norm": False, "frame_chunk": 3}),
                           outputs=["5"])["5"][0]["samples"], b)
    assert torch.equal(run(_ksampler_graph(tiny_ckpt, 8, {}), outputs=["5"])["5"][0]["samples"], a)
