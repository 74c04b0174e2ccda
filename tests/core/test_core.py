"""The method floor alone: sampling loops, the controller's widget grammar, local blend as a
step hook, the attention-hook protocol, the toy world; no ComfyUI is booted or imported."""
import dataclasses
import sys

import pytest
import torch

import vp2p_core
from vp2p_core import control as vc
from vp2p_core import prompts
from vp2p_core import seq_aligner as sa
from vp2p_core.sampling import guided_ddim, two_branch_ddim
from vp2p_core.schedule import ddim_step, ddim_uniform


VOCAB = {}


def encode(text):
    """A word-level stand-in for a CLIP tokenizer: one id per word (two for 'motorbike'), distinct
    for distinct words (str hash() is salted per process and could make two words collide)."""
    ids = []
    for w in text.replace(",", " ").split():
        i = VOCAB.setdefault(w, len(VOCAB) + 1)
        ids += [i, 1000 + i] if w == "motorbike" else [i]
    return ids


def test_core_is_pure_torch():
    """Importing every core module (and the toy world) in a fresh interpreter loads no ComfyUI."""
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mods = sorted(f[:-3] for f in os.listdir(os.path.dirname(vp2p_core.__file__))
                  if f.endswith(".py") and f != "__init__.py")
    code = ("import sys; " + "; ".join(f"import vp2p_core.{m}" for m in mods) + "; import vp2p_toy.world; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'nodes', 'vp2p_host')]; "
            "print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {"sampling", "prompts", "control", "inversion"} <= set(mods)


def fake_denoiser():
    w = torch.linspace(0.5, 1.5, 4).view(1, 4, 1, 1)

    def cfg_denoise(x, sigma, cond, uncond, cfg):
        c, u = x * w / (1 + sigma) + cond.mean(), x * w / (1 + sigma) + uncond.mean()
        return u + (c - u) * cfg
    return cfg_denoise


def test_two_branch_loop_without_control_is_guided_ddim_twice():
    sigmas = ddim_uniform(5)
    x_T = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    cond, tcond = torch.full((1, 2, 8), 0.3), torch.full((1, 2, 8), -0.2)
    nulls = torch.randn(len(sigmas) - 1, 1, 2, 8, generator=torch.Generator().manual_seed(1))
    empty = torch.zeros(1, 2, 8)
    f = fake_denoiser()
    ref_src, _ = guided_ddim(f, x_T, sigmas, cond, nulls, 7.5)
    ref_tgt, _ = guided_ddim(f, x_T, sigmas, tcond, empty[None].repeat(len(sigmas) - 1, 1, 1, 1), 5.0)
    steps = []

    def denoise_step(i, xs, xt):
        return f(xs, sigmas[i], cond, nulls[i], 7.5), f(xt, sigmas[i], tcond, empty, 5.0)
    src, tgt = two_branch_ddim(denoise_step, x_T, sigmas, on_step=lambda i, n: steps.append((i, n)))
    assert torch.equal(src, ref_src) and torch.equal(tgt, ref_tgt)
    assert steps == [(i, len(sigmas) - 1) for i in range(len(sigmas) - 1)]
    assert not torch.equal(src, tgt)


def test_two_branch_loop_source_trajectory_and_hooks():
    sigmas = ddim_uniform(4)
    x_T = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    traj = [torch.full_like(x_T, float(i)) for i in range(len(sigmas))]
    seen = []

    def hook(i, n, xs, xt):
        seen.append(float(xs.mean()))
        return xs.clone()           # a hook that keeps nothing of the target
    src, tgt = two_branch_ddim(lambda i, xs, xt: (xs * 0, xt * 0), x_T, sigmas, traj, [hook])
    assert seen == [float(i + 1) for i in range(len(sigmas) - 1)]
    assert torch.equal(src, traj[-1]) and torch.equal(tgt, traj[-1])


def test_ddim_step_to_sigma_zero_is_the_prediction():
    x, den = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert torch.allclose(ddim_step(x, den, torch.tensor(2.0), torch.tensor(0.0)), den, atol=1e-6)


def test_local_blend_step_callback_keeps_source_outside_the_mask():
    lb = vc.LocalBlend([1], [1], threshold=0.5, start=0.5)
    store = vc.AttentionStore()
    h = w = 4
    p = torch.zeros(2, 1, h * w, 3)               # [rows=F, heads, tokens, words]
    p[:, :, 0, 1] = 1.0                           # word 1 attends to the top-left cell only
    store.add(("input", 1, 0), p, p)
    store.end_step()
    xs, xt = torch.zeros(2, 4, h, w), torch.ones(2, 4, h, w)
    assert torch.equal(lb.step_callback(0, 4, xs, xt, store, (h * w, (h, w))), xt)   # before start
    out = lb.step_callback(2, 4, xs, xt, store, (h * w, (h, w)))
    assert out[:, :, 0, 0].eq(1).all() and out[:, :, -1, -1].eq(0).all()


def test_store_records_the_maps_the_target_used():
    """As in prompt-to-prompt (its store holds the attention after the in-place edit), the local
    blend and the map previews read the target's edited maps inside the replace window and its
    own maps after it."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)   # rows: [src, tgt]
    mapper = torch.eye(5)[[0, 2, 1, 3, 4]]                                       # swap tokens 1 and 2
    ctrl = vc.AttentionReplace(mapper, cross_replace=0.5)
    fast = lambda q, k, v, h: vc.apply_probs(vc.attention_probs(q, k, h), v, h, q.dtype)   # noqa: E731
    p_src, p_tgt = vc.attention_probs(q[:1], k[:1], 1), vc.attention_probs(q[1:], k[1:], 1)
    for step, want in ((0, torch.einsum("rhqk,kn->rhqn", p_src, mapper)), (6, p_tgt)):
        store = vc.AttentionStore()
        vc.StepContext(ctrl, [vc.SRC_C, vc.TGT_C], step, 10, fast, store=store).attend("cross", "l", q, k, v, 1)
        store.end_step()
        s = store.maps(6, 2, 3)
        assert torch.allclose(s[0].reshape(1, 6, 5), p_src.mean(1)) and torch.allclose(s[1].reshape(1, 6, 5), want.mean(1))


def test_step_context_is_an_attention_hook():
    ctx = vc.StepContext(None, [vc.SRC_C, vc.TGT_C], 0, 10, lambda q, k, v, h: q)
    assert isinstance(ctx, vc.AttentionHook)


def test_widget_grammar_is_shared_by_node_and_preview():
    assert prompts.parse_words("bike; motorbike ,, red") == ["bike", "motorbike", "red"]
    assert prompts.parse_scales("2", 3) == [2.0, 2.0, 2.0] and prompts.parse_scales("", 2) == [1.0, 1.0]
    with pytest.raises(prompts.PromptError, match="one scale, or one per word"):
        prompts.parse_scales("1, 2", 3)
    src, tgt = "a man riding a bike", "a man riding a motorbike"
    settings = prompts.EditSettings(src, tgt, "swap", 0.2, 0.5, blend_words="bike, motorbike")
    ctrl, maps, label = prompts.build_controller(encode, settings)
    assert isinstance(ctrl, vc.AttentionReplace) and ctrl.local_blend is not None and label == "swap"
    assert [m[0] for m in maps] == ["motorbike"]
    # a blend word in neither prompt: an error in the node, flagged in the preview
    with pytest.raises(prompts.PromptError, match="neither prompt"):
        prompts.build_controller(encode, dataclasses.replace(settings, blend_words="car"))
    out = prompts.preview(encode, {"source": src, "target": tgt, "mode": "swap", "blend_words": "car"})
    assert any("neither prompt" in w for w in out["warnings"])
    ok = prompts.preview(encode, {"source": src, "target": tgt, "mode": "swap", "blend_words": "bike"})
    assert ok["ok"], ok
    # presets resolve the same way in both
    v, base = prompts.resolve_preset(prompts.EditSettings(src, tgt, preset="swap + reweight + blend (official)"))
    assert v.mode == "reweight" and base == "swap" and v.reweight_words == "motorbike"
    assert (v.cross_replace, v.self_replace, v.blend_threshold, v.blend_start) == (0.2, 0.5, 0.3, 0.2)
    pv = prompts.preview(encode, {"source": src, "target": tgt, "preset": "swap + reweight + blend (official)"})
    assert pv["ok"] and pv["mode"].startswith("swap+reweight")


def test_blend_maps_source_reads_shared_words_on_the_source_only():
    """blend_maps: a blend word both prompts have is read on the source alone ("source where both
    have the word"), else on both (prompt-to-prompt); a word only one prompt has stays where it is."""
    src, tgt = "a red car on a road", "a blue car on a road"
    car_s, car_t = sa.token_indices(encode, src, "car"), sa.token_indices(encode, tgt, "car")
    assert car_s and car_t
    settings = prompts.EditSettings(src, tgt, blend_words="car, blue")
    both = prompts.build_controller(encode, settings)[0].local_blend
    source = prompts.build_controller(encode, dataclasses.replace(settings, blend_maps=prompts.BLEND_SOURCE))[0].local_blend
    blue = sa.token_indices(encode, tgt, "blue")
    assert both.src_tokens == source.src_tokens == car_s
    assert sorted(both.tgt_tokens) == sorted(car_t + blue) and source.tgt_tokens == blue
    assert prompts.build_controller(encode, dataclasses.replace(settings, blend_maps=prompts.BLEND_BOTH))[0] \
        .local_blend.tgt_tokens == both.tgt_tokens
    with pytest.raises(prompts.PromptError, match="blend_maps"):
        prompts.build_controller(encode, dataclasses.replace(settings, blend_maps="target"))


def test_toy_world_renders_without_comfyui():
    from vp2p_toy import oracle, world
    spec = world.WorldSpec(shape="circle", colour="red", background="striped", background_colour="gray",
                           frames=2, size=64, start=(0.3, 0.5), end=(0.7, 0.5), scale=(0.22, 0.22), seed=0).check()
    video, truth = world.render(spec)
    assert video.shape == (2, 64, 64, 3) and truth["masks"].shape[0] == 2
    got = oracle.classify(video[0])
    assert got["colour"] == "red" and got["shape"] == "circle"


def test_blend_reads_an_edited_word_only_where_the_edit_changes_it():
    """Two objects of one shape, one swapped: the blend word names both, but the mask must mark the
    edited one only; words the edit does not change, and single-object prompts, read as before."""
    src, tgt = "a red circle and a blue circle", "a red circle and a blue square"
    s, t = prompts.blend_tokens(encode, src, tgt, ["circle", "square"])
    assert s == [7] and t == [7]                       # the second circle and the square, not the first circle
    assert sa.token_indices(encode, src, "circle") == [3, 7]
    # unchanged words (a colour swap's noun) and single occurrences: every occurrence, as prompt-to-prompt
    assert prompts.blend_tokens(encode, "a red circle and a blue circle", "a red circle and a green circle",
                                ["circle"]) == ([3, 7], [3, 7])
    assert prompts.blend_tokens(encode, "a red circle", "a red square", ["circle", "square"]) == ([3], [3])
    assert prompts.blend_tokens(encode, "a rabbit", "a origami rabbit", ["rabbit"]) == ([2], [3])
