"""The toy world and its pixel oracles (ground truth known), and the toy nodes in ComfyUI."""
import json

import numpy as np
import pytest

import comfy_host
import devkit as tl


@pytest.fixture(scope="module")
def toy():
    return tl.toy.world, tl.toy.oracle


def test_oracle_reads_colour_shape_and_position(toy):
    world, oracle = toy
    rng = np.random.default_rng(123)
    n = ok_colour = ok_shape = 0
    errs = []
    for _ in range(300):
        spec = world.random_spec(rng, frames=3)
        video, truth = world.render(spec)
        for f, c in zip(video, truth["centres"]):
            got = oracle.classify(f)
            n += 1
            ok_colour += got["colour"] == spec.colour
            ok_shape += got["shape"] == spec.shape
            errs.append(np.hypot(got["centre"][0] - c[0], got["centre"][1] - c[1]))
    assert ok_colour / n >= 0.98 and ok_shape / n >= 0.98, (ok_colour / n, ok_shape / n)
    assert np.median(errs) < 1.5


def test_oracle_sees_no_object_on_a_bare_background(toy):
    world, oracle = toy
    rng = np.random.default_rng(0)
    for kind in world.BACKGROUNDS:
        for colour in world.BG_COLOURS:
            bg = world.background(kind, colour, 64, rng)
            assert oracle.classify(bg.astype(np.uint8))["colour"] is None, (kind, colour)


def test_render_is_deterministic_and_spec_round_trips(toy):
    world, _ = toy
    spec = world.WorldSpec(shape="triangle", colour="purple", background="noisy", frames=6, seed=7)
    a, ta = world.render(spec)
    b, _ = world.render(world.WorldSpec.from_dict(json.loads(world.spec_json(spec))))
    assert a.shape == (6, 64, 64, 3) and np.array_equal(a, b)
    assert ta["caption"] == "a purple triangle on a noisy gray background"
    assert not np.array_equal(a[0], a[-1])   # it moves
    with pytest.raises(ValueError, match="colour"):
        world.WorldSpec(colour="magenta").check()
    with pytest.raises(ValueError, match="unknown spec keys"):
        world.WorldSpec.from_dict({"shapes": "circle"})


def test_background_psnr_and_flicker(toy):
    world, oracle = toy
    spec = world.WorldSpec(frames=5, seed=3)
    video, truth = world.render(spec)
    bg = oracle.background_mask(truth["masks"])
    assert oracle.background_psnr(video, video, bg) == float("inf")
    assert oracle.flicker(video, bg) == 0.0                  # a static background does not flicker
    noisy = np.clip(video.astype(int) + np.random.default_rng(0).integers(-8, 9, video.shape), 0, 255)
    assert 25 < oracle.background_psnr(noisy, video, bg) < 40
    assert oracle.flicker(noisy, bg) > 3
    other = world.render(world.WorldSpec(frames=5, seed=3, colour="blue"))[0]
    assert oracle.background_psnr(other, video, bg) == float("inf")   # only the object changed


def test_toy_nodes_through_the_executor(host):
    prompt = {
        "1": {"class_type": "VP2PToyWorldVideo", "inputs": {
            "shape": "square", "colour": "yellow", "background": "checkered", "background_colour": "teal",
            "frames": 4, "size": 64, "start_x": 0.3, "start_y": 0.4, "end_x": 0.6, "end_y": 0.6, "radius": 0.2,
            "end_radius": 0.25, "texture_seed": 1}},
        "2": {"class_type": "VP2PToyWorldOracle", "inputs": {"images": ["1", 0]}},
    }
    out = comfy_host.run_prompt(prompt, outputs=["1", "2"])
    frames, cap, mask, spec = out["1"]
    assert frames.shape == (4, 64, 64, 3) and mask.shape == (4, 64, 64)
    assert cap == "a yellow square on a checkered teal background"
    assert json.loads(spec)["scale"] == [0.2, 0.25]
    rows = json.loads(out["2"][0])
    assert [(r["colour"], r["shape"]) for r in rows] == [("yellow", "square")] * 4
