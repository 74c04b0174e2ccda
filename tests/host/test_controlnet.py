"""Video-P2P chained with a ControlNet, and the edit as a GUIDER for SamplerCustomAdvanced: the
Decoupled Sampler runs through ComfyUI's sampler and calc_cond_batch, so what ComfyUI attaches to
a conditioning (here a tiny ControlNet built from ComfyUI's own classes) acts on the edit."""
import pytest
import torch

from vp2p_dev import devkit as tl

FRAMES, H, W, STEPS, CFG = 3, 8, 8, 5, 7.5
WIDGETS = dict(cross_replace=0.4, self_replace=0.5, reweight_words="", reweight_scales="", blend_words="",
               blend_threshold=0.3, blend_start=0.2, controlled_layers="cross+temporal (paper)", map_words="")
SOURCE, TARGET = "a red circle", "a blue circle"


@pytest.fixture(scope="module")
def setup(tiny):
    model, clip, _ = tiny
    noise = torch.randn(FRAMES, 4, H, W, generator=torch.Generator().manual_seed(5))
    spec, src, tgt = tl.host.text.build_control(clip, tl.core.prompts.EditSettings(SOURCE, TARGET, "swap", **WIDGETS))
    inv = tl.noise_inversion(model, clip, SOURCE, noise, steps=STEPS)
    hint = torch.rand(FRAMES, H * 8, W * 8, 3, generator=torch.Generator().manual_seed(1))
    return model, clip, spec, src, tgt, inv, tl.tiny_controlnet(model), hint


def edit(model, inv, spec, source=None, target=None):
    edited, source_lat, _ = tl.host.sampling.decoupled_sample(model, inv, spec, CFG, "auto",
                                                              source=source, target=target)
    return edited["samples"], source_lat["samples"]


def with_control(cond, cnet, hint, strength):
    """The conditioning with the ControlNet attached at `strength`, as Apply ControlNet does
    (without its strength-0 shortcut, so the ControlNet really runs)."""
    c = cnet.copy().set_cond_hint(hint.movedim(-1, 1), strength, (0.0, 1.0))
    return [[t, dict(opts, control=c)] for t, opts in cond]


def test_a_controlnet_on_the_target_changes_the_edit_only(setup):
    import nodes
    model, _, spec, src, tgt, inv, cnet, hint = setup
    plain_e, plain_s = edit(model, inv, spec)
    tgt_cn, _ = nodes.ControlNetApplyAdvanced().apply_controlnet(tgt, tgt, cnet, hint, 1.0, 0.0, 1.0)
    e, s = edit(model, inv, spec, target=tgt_cn)
    assert (e - plain_e).abs().max() > 1e-3
    assert torch.equal(s, plain_s)               # the source branch does not see the target's control


def test_a_controlnet_at_strength_0_changes_nothing(setup):
    model, _, spec, src, tgt, inv, cnet, hint = setup
    plain_e, plain_s = edit(model, inv, spec)
    e, s = edit(model, inv, spec, source=with_control(src, cnet, hint, 0.0), target=with_control(tgt, cnet, hint, 0.0))
    assert torch.equal(e, plain_e) and torch.equal(s, plain_s)


def test_a_controlnet_on_the_source_reaches_the_source_branch(setup):
    model, _, spec, src, tgt, inv, cnet, hint = setup
    _, plain_s = edit(model, inv, spec)
    _, s = edit(model, inv, spec, source=with_control(src, cnet, hint, 1.0))
    assert (s - plain_s).abs().max() > 1e-3


def test_a_conditioning_of_another_prompt_is_refused(setup):
    model, clip, spec, src, tgt, inv, cnet, hint = setup
    other = tl.encode(clip, "a green square")
    with pytest.raises(Exception, match="another prompt than the P2P Controller"):
        edit(model, inv, spec, target=other)


def test_guider_in_sampler_custom_advanced_is_the_decoupled_sampler(setup):
    """Decoupled Guider -> core SamplerCustomAdvanced (ddim, BasicScheduler ddim_uniform) gives the
    Decoupled Sampler's edited latent; another schedule is refused with the fix."""
    import comfy.samplers
    import comfy_extras.nodes_custom_sampler as cs
    model, _, spec, src, tgt, inv, cnet, hint = setup
    plain_e, _ = edit(model, inv, spec)
    guider = tl.host.sampling.decoupled_guider(model, inv, spec, CFG)
    sampler = comfy.samplers.sampler_object("ddim")
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "ddim_uniform", STEPS)
    noise = cs.Noise_RandomNoise(0)
    latent = {"samples": torch.zeros(FRAMES, 4, H, W)}
    run = cs.SamplerCustomAdvanced()
    run = getattr(run, "sample", None) or getattr(cs.SamplerCustomAdvanced, "execute")
    out = run(noise, guider, sampler, sigmas, latent)
    out = out[0] if isinstance(out, tuple) else out.result[0]
    assert torch.equal(out["samples"].float(), plain_e)
    with pytest.raises(Exception, match="ddim_uniform"):
        run(noise, guider, sampler, sigmas[1:], latent)
