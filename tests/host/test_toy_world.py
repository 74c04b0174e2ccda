"""The toy world and its pixel oracles (ground truth known), and the toy nodes in ComfyUI."""
import json

import numpy as np
import pytest

from vp2p_dev import comfy_host
from vp2p_dev import devkit as tl


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
    frames, cap, mask, spec = out["1"][:4]
    assert frames.shape == (4, 64, 64, 3) and mask.shape == (4, 64, 64)
    assert cap == "a yellow square on a checkered teal background"
    assert json.loads(spec)["scale"] == [0.2, 0.25]
    rows = json.loads(out["2"][0])
    assert [(r["colour"], r["shape"]) for r in rows] == [("yellow", "square")] * 4


def test_oracle_reads_two_objects(toy):
    world, oracle = toy
    rng = np.random.default_rng(7)
    ok = 0
    for _ in range(200):
        spec = world.random_spec(rng, frames=1, objects=2)
        video, truth = world.render(spec)
        want = [(o["colour"], o["shape"]) for o in truth["objects"]]
        got = oracle.find_objects(video[0])
        ok += oracle.matches(got, want)
    assert ok / 200 >= 0.98, ok / 200
    spec = world.WorldSpec(colour="blue", shape="circle", background="checkered", background_colour="pink",
                           frames=2, start=(0.3, 0.6), end=(0.35, 0.6), scale=(0.15, 0.15), seed=2,
                           second=world.ObjectSpec("triangle", "yellow", (0.7, 0.3), (0.7, 0.4), (0.12, 0.12)))
    video, truth = world.render(spec)
    got = oracle.find_objects(video[0], k=3)                    # the anti-aliased fringe is no object
    assert [(o["colour"], o["shape"]) for o in got] == [("blue", "circle"), ("yellow", "triangle")]
    assert got[0]["area"] > got[1]["area"] and got[0]["mask"].dtype == bool
    assert abs(got[0]["centre"][0] - truth["centres"][0][0]) < 1 and abs(got[1]["centre"][0] - 0.7 * 64) < 1
    assert oracle.matches(got, [("yellow", "triangle"), ("blue", "circle")])
    assert not oracle.matches(got, [("blue", "circle")]) and not oracle.matches(got[:1], [("blue", "circle")] * 2)
    assert oracle.find_objects(video[0], k=1)[0]["colour"] == "blue"
    # near one object's truth: only that object
    assert oracle.read_near(video[0], truth["objects"][1]["masks"][0])["colour"] == "yellow"
    assert oracle.read_near(video[0], np.zeros((64, 64)))["colour"] is None


def test_oracle_splits_touching_objects_by_colour(toy):
    world, oracle = toy
    spec = world.WorldSpec(colour="red", shape="square", frames=1, start=(0.35, 0.5), end=(0.35, 0.5),
                           scale=(0.16, 0.16), seed=1,
                           second=world.ObjectSpec("circle", "green", (0.62, 0.5), (0.62, 0.5), (0.14, 0.14)))
    video, truth = world.render(spec)
    assert (truth["objects"][0]["masks"][0] * truth["objects"][1]["masks"][0] > 0).any() or \
        oracle.object_mask(video[0]).sum() > truth["objects"][0]["masks"][0].sum() * 1.3   # they touch
    got = oracle.find_objects(video[0])
    assert oracle.matches(got, [("red", "square"), ("green", "circle")]), [(o["colour"], o["shape"]) for o in got]


def test_unchanged_object_metrics(toy):
    world, oracle = toy
    spec = world.random_spec(np.random.default_rng(11), frames=6, objects=2)
    video, truth = world.render(spec)
    first, second = truth["objects"]
    assert np.array_equal(truth["masks"], first["masks"]) and truth["colour"] == spec.colour
    assert oracle.kept_object(video, video, second) == {"psnr": float("inf"), "rate": 1.0}
    colour = next(c for c in world.COLOURS if c not in (spec.colour, spec.second.colour))
    recoloured = world.render(spec.with_second(colour=colour))[0]
    k = oracle.kept_object(recoloured, video, second)
    assert k["psnr"] < 15 and k["rate"] == 0.0, k
    assert oracle.kept_object(recoloured, video, first) == {"psnr": float("inf"), "rate": 1.0}  # the other one kept
    reshaped = world.render(spec.with_second(shape=next(s for s in world.SHAPES if s != spec.second.shape)))[0]
    k = oracle.kept_object(reshaped, video, second)
    assert k["psnr"] < 30 and k["rate"] == 0.0, k
    noisy = np.clip(video.astype(int) + np.random.default_rng(0).integers(-8, 9, video.shape), 0, 255)
    k = oracle.kept_object(noisy, video, second)
    assert 25 < k["psnr"] < 40 and k["rate"] == 1.0, k


def test_two_object_render_and_background(toy):
    world, oracle = toy
    spec = world.random_spec(np.random.default_rng(3), frames=5, objects=2)
    assert len(spec.objects()) == 2 and world.WorldSpec.from_dict(json.loads(world.spec_json(spec))) == spec
    a, b = spec.objects()
    assert spec.caption == (f"a {a.colour} {a.shape} and a {b.colour} {b.shape} on a {spec.background} "
                            f"{spec.background_colour} background")
    video, truth = world.render(spec)
    masks = [o["masks"] for o in truth["objects"]]
    assert all(m.shape == (5, 64, 64) for m in masks) and not (masks[0] * masks[1] > 0.02).any()   # apart
    bg = oracle.background_mask(*masks)
    assert not (bg & (masks[1] > 0.02)).any() and not (bg & (masks[0] > 0.02)).any()
    assert oracle.flicker(video, bg) == 0.0
    other = world.render(spec.with_second(colour=spec.colour))[0]
    assert oracle.background_psnr(other, video, bg) == float("inf")
    assert oracle.background_psnr(other, video, oracle.background_mask(masks[0])) < 30   # one mask is not enough


def test_quality_judge_on_rendered_edits(toy):
    """The benchmark's judging (no model): a rendered target is a perfect edit."""
    import quality     # bench/ is on pytest's pythonpath
    world, oracle = toy
    spec = world.WorldSpec(colour="red", shape="circle", background="striped", frames=6, start=(0.3, 0.35),
                           end=(0.35, 0.45), scale=(0.14, 0.17), seed=4,
                           second=world.ObjectSpec("square", "blue", (0.7, 0.7), (0.65, 0.6), (0.15, 0.13), (0, 90)))
    video, truth = world.render(spec)
    target = "a red circle and a blue triangle on a striped gray background"
    want = quality.expected_objects(world, target, spec)
    assert want == [("red", "circle"), ("blue", "triangle")]
    perfect = quality.judge(oracle, world.render(spec.with_second(shape="triangle"))[0], video, truth, want)
    assert perfect["edit_success"] == 1.0 and perfect["keep_psnr"] == float("inf") and perfect["keep_rate"] == 1.0
    assert perfect["bg_psnr"] == float("inf") and perfect["flicker"] == 0.0
    untouched = quality.judge(oracle, video, video, truth, want)
    assert untouched["edit_success"] == 0.0 and untouched["keep_rate"] == 1.0
    wrong = quality.judge(oracle, world.render(spec.with_object(shape="triangle"))[0], video, truth, want)
    assert wrong["edit_success"] == 0.0 and wrong["keep_rate"] == 0.0 and wrong["keep_psnr"] < 30
    with pytest.raises(SystemExit, match="2 objects"):
        quality.expected_objects(world, "a red circle on a striped gray background", spec)
    # one object: the old reading (the target's palette words, the whole frame)
    one = world.WorldSpec(frames=4, seed=1)
    v1, t1 = world.render(one)
    want1 = quality.expected_objects(world, "a green circle on a striped gray background", one)
    r = quality.judge(oracle, world.render(one.with_object(colour="green"))[0], v1, t1, want1)
    assert r == {"edit_success": 1.0, "bg_psnr": float("inf"), "flicker": 0.0}


def test_quality_report_keeps_old_results_and_adds_keep_columns():
    import quality     # bench/ is on pytest's pythonpath
    old = {"recon_psnr": 28.0, "edit_success": 1.0, "bg_psnr": 25.0, "flicker": 3.0, "seconds": 20.0}  # no invert_seconds
    one = {c: {"video-p2p": dict(old), "ddim+target": dict(old, edit_success=0.5)} for c in ("a", "b")}
    _, md = quality.report(one, ["video-p2p", "ddim+target"], 2, "x.json")
    assert "keep" not in md and "| video-p2p | 28.0 ± 0.0 | 1.00 ± 0.00 |" in md and "| ddim+target |" in md
    two = dict(one, c={"video-p2p": dict(old, keep_psnr=30.0, keep_rate=1.0),
                       "ddim+target": dict(old, keep_psnr=20.0, keep_rate=0.5)})
    table, md = quality.report(two, ["video-p2p", "ddim+target"], 3, "x.json")
    assert table["video-p2p"]["keep_psnr"] == (30.0, 0.0) and table["ddim+target"]["keep_rate"] == (0.5, 0.0)
    assert "keep PSNR dB | keep rate |" in md and "over the 1 two-object cases" in md
    assert "| 30.0 ± 0.0 | 1.00 ± 0.00 |" in md and "| +10.0 ± 0.0 (1/1) | +0.50 ± 0.00 (1/1) |" in md
