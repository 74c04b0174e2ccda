"""vp2p_core.control: the prompt-to-prompt edits on attention probabilities (pure torch)."""
import pytest
import torch

from vp2p_core import control as vc


def probs(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g), -1)


def test_windows():
    assert vc.window(0.2) == (0.0, 0.2) and vc.window((0.1, 0.5)) == (0.1, 0.5)
    with pytest.raises(ValueError):
        vc.window((0.6, 0.5))
    active = [s for s in range(50) if vc.in_window((0.0, 0.2), s, 50)]
    assert active == list(range(10))
    c = vc.AttentionControl(cross_replace=0.2, self_replace=0.5)
    assert c.edits("cross", 9, 50) and not c.edits("cross", 10, 50)
    assert c.edits("temporal", 24, 50) and not c.edits("temporal", 25, 50)
    assert not c.edits("frame", 0, 50)  # the paper does not control frame attention
    c2 = vc.AttentionControl(cross_replace=0.2, self_replace=0.5, layers=("cross", "temporal", "frame"))
    assert c2.edits("frame", 0, 50)
    assert vc.AttentionControl(0.0, 0.0).is_identity() and not c.is_identity()


def test_replace_maps_columns():
    p_src, p_tgt = probs(2, 3, 5, 77, seed=1), probs(2, 3, 5, 77, seed=2)
    eye = vc.AttentionReplace(torch.eye(77))
    assert torch.equal(eye.edit("cross", p_src, p_tgt), p_src)
    perm = torch.eye(77)[:, torch.randperm(77, generator=torch.Generator().manual_seed(0))]
    out = vc.AttentionReplace(perm).edit("cross", p_src, p_tgt)
    assert torch.allclose(out, p_src @ perm)
    # temporal maps are copied whole
    assert torch.equal(eye.edit("temporal", p_src, p_tgt), p_src)


def test_refine_alphas():
    p_src, p_tgt = probs(1, 2, 4, 77, seed=3), probs(1, 2, 4, 77, seed=4)
    mapper = torch.arange(77).roll(1)
    alphas = torch.zeros(77)
    alphas[:10] = 1
    out = vc.AttentionRefine(mapper, alphas).edit("cross", p_src, p_tgt)
    assert torch.allclose(out[..., :10], p_src[..., mapper[:10]])
    assert torch.equal(out[..., 10:], p_tgt[..., 10:])


def test_reweight_identity_and_chain():
    p_src, p_tgt = probs(1, 2, 4, 77, seed=5), probs(1, 2, 4, 77, seed=6)
    assert torch.equal(vc.AttentionReweight(torch.ones(77)).edit("cross", p_src, p_tgt), p_src)
    eq = torch.ones(77)
    eq[3] = 2.5
    perm = torch.eye(77)[:, torch.randperm(77, generator=torch.Generator().manual_seed(1))]
    base = vc.AttentionReplace(perm)
    chained = vc.AttentionReweight(eq, prev=base).edit("cross", p_src, p_tgt)
    assert torch.allclose(chained, base.edit("cross", p_src, p_tgt) * eq)


def test_local_blend_masks_are_per_frame():
    F, h, w = 3, 4, 4
    maps = torch.zeros(F, h, w, 77)
    for f in range(F):
        maps[f, f, f, 5] = 1.0          # word token 5 attends to a different cell per frame
    lb = vc.LocalBlend([5], [], threshold=0.3, start=0.0, pool=0)
    mask = lb.mask(maps, maps, (8, 8))
    assert mask.shape == (F, 1, 8, 8)
    assert not torch.equal(mask[0], mask[1])
    x_src, x_tgt = torch.randn(F, 4, 8, 8), torch.randn(F, 4, 8, 8)
    out = lb.apply(x_src, x_tgt, mask)
    m = mask.expand_as(out)
    assert torch.equal(out[~m], x_src[~m]) and torch.equal(out[m], x_tgt[m])
    with pytest.raises(ValueError):
        vc.LocalBlend([], [])


def test_step_context_fast_path_and_source_first_cache():
    heads, rows, L = 2, 3, 6
    q = torch.randn(4 * rows, L, 8)
    k = torch.randn(4 * rows, 77, 8)
    v = torch.randn(4 * rows, 77, 8)

    def fast(q, k, v, heads):
        return vc.apply_probs(vc.attention_probs(q, k, heads), v, heads, q.dtype)

    roles = [vc.SRC_U, vc.SRC_C, vc.TGT_U, vc.TGT_C]
    off = vc.StepContext(vc.AttentionReplace(torch.eye(77), cross_replace=0.0), roles, 0, 10, fast)
    assert not off.wants("cross", ("input", 1, 0))
    ctrl = vc.AttentionReplace(torch.eye(77), cross_replace=1.0)
    on = vc.StepContext(ctrl, roles, 0, 10, fast)
    out = on.attend("cross", "k", q, k, v, heads)
    qs, ks, vs = q.split(rows), k.split(rows), v.split(rows)
    p_src = vc.attention_probs(qs[1], ks[1], heads)
    assert torch.allclose(out.split(rows)[3], vc.apply_probs(p_src, vs[3], heads, q.dtype))
    assert torch.equal(out.split(rows)[2], fast(qs[2], ks[2], vs[2], heads))  # uncond untouched
    # source-first: same result from two calls sharing a cache
    cache = {}
    a = vc.StepContext(ctrl, roles[:2], 0, 10, fast, cache=cache).attend(
        "cross", "k", q[:2 * rows], k[:2 * rows], v[:2 * rows], heads)
    b = vc.StepContext(ctrl, roles[2:], 0, 10, fast, cache=cache).attend(
        "cross", "k", q[2 * rows:], k[2 * rows:], v[2 * rows:], heads)
    assert torch.equal(torch.cat([a, b]), out)
    (held,) = cache.values()               # the source's q and k, not its [rows, heads, L, 77] map
    assert [t.shape for t in held] == [qs[1].shape, ks[1].shape]


def test_replay_attention_in_chunks_equals_the_full_map():
    """The temporal / frame replacement computed in query chunks gives the full map's result."""
    g = torch.Generator().manual_seed(1)
    heads, rows, lq, lk, c = 2, 3, 50, 40, 8
    q, k, v = (torch.randn(rows, n, c, generator=g) for n in (lq, lk, lk))
    full = vc.apply_probs(vc.attention_probs(q, k, heads), v, heads, q.dtype)
    assert torch.equal(vc.replay_attention(q, k, v, heads, q.dtype), full)   # fits the budget: one call
    per_query = rows * heads * lk * 4
    for chunk in (1, 7, 49):                                                  # budgets of 1, 7, 49 queries
        out = vc.replay_attention(q, k, v, heads, q.dtype, max_bytes=chunk * per_query)
        assert out.shape == full.shape
        assert torch.allclose(out, full, atol=1e-6, rtol=0)


def test_self_attention_control_replays_the_cached_queries_and_keys():
    """Source-first runs (the Decoupled Sampler's branches) leave the source's q/k of a frame or
    temporal layer in the cache, not its [rows, heads, Lq, Lk] map; the target's result equals
    the one-call (both branches batched) result and the source's map applied to the target's values."""
    heads, rows, L = 2, 3, 64
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(4 * rows, L, 8, generator=g) for _ in range(3))

    def fast(q, k, v, heads):
        return vc.apply_probs(vc.attention_probs(q, k, heads), v, heads, q.dtype)

    roles = [vc.SRC_U, vc.SRC_C, vc.TGT_U, vc.TGT_C]
    ctrl = vc.AttentionReplace(torch.eye(77), cross_replace=1.0, self_replace=1.0,
                               layers=("cross", "temporal", "frame"))
    for kind in ("frame", "temporal"):
        one = vc.StepContext(ctrl, roles, 0, 10, fast).attend(kind, "k", q, k, v, heads)
        qs, ks, vs = q.split(rows), k.split(rows), v.split(rows)
        want = vc.apply_probs(vc.attention_probs(qs[1], ks[1], heads), vs[3], heads, q.dtype)
        assert torch.allclose(one.split(rows)[3], want, atol=1e-6)
        assert torch.equal(one.split(rows)[2], fast(qs[2], ks[2], vs[2], heads))
        cache = {}
        a = vc.StepContext(ctrl, roles[:2], 0, 10, fast, cache=cache).attend(
            kind, "k", q[:2 * rows], k[:2 * rows], v[:2 * rows], heads)
        (held,) = cache.values()
        assert [t.shape for t in held] == [qs[1].shape, ks[1].shape]       # q and k, no L x L map
        b = vc.StepContext(ctrl, roles[2:], 0, 10, fast, cache=cache).attend(
            kind, "k", q[2 * rows:], k[2 * rows:], v[2 * rows:], heads)
        assert torch.equal(torch.cat([a, b]), one)
