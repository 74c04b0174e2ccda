"""bench/quality.py --draw: cases drawn from the toy world's generator are a function of the seed,
cover every edit kind, and are valid edits of their worlds (no ComfyUI needed)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

import quality  # noqa: E402
from vp2p_toy import world  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def drawn():
    return quality.draw_cases(world, N, 7)


def test_drawing_is_a_function_of_the_seed(drawn):
    assert quality.draw_cases(world, N, 7) == drawn
    assert quality.draw_cases(world, N, 8) != drawn
    # each kind has its own stream: drawing more keeps the first cases
    fewer = quality.draw_cases(world, 2, 7)
    assert fewer == [c for c in drawn if int(c["name"].rsplit("-", 1)[1]) < 2]


def test_every_kind_n_times_with_varied_clips(drawn):
    assert [c["kind"] for c in drawn] == [k for k in quality.KINDS for _ in range(N)]
    assert len({c["name"] for c in drawn}) == len(drawn)
    many = quality.draw_cases(world, 12, 3)
    frames = [c["world"]["frames"] for c in many]
    assert min(frames) >= 8 and max(frames) <= 48 and len(set(frames)) > 10
    turned = [c for c in many if c["world"].get("rotation", (0, 0))[0] != c["world"].get("rotation", (0, 0))[1]]
    assert 0 < len(turned) < len(many)
    assert {c["mode"] for c in many} == {"swap", "refine", "reweight"}
    assert any("source" in c for c in many)       # refines that add the second object's words


def test_drawn_cases_are_valid_edits(drawn):
    for c in drawn:
        spec = world.WorldSpec.from_dict(c["world"])
        source = c.get("source", spec.caption)
        objs = [(o.colour, o.shape) for o in spec.objects()]
        want = [tuple(w) for w in quality.expected_objects(world, c["target"], spec)]
        changed = [(o, w) for o, w in zip(objs, want) if o != w]
        assert len(want) == len(objs) == (2 if c["kind"].startswith("two-") or "source" in c else 1), c
        assert len(changed) == 1 and c["target"] != source, c       # exactly one object is edited
        (oc, os_), (wc, ws) = changed[0]
        if c["kind"] in ("colour-swap", "reweight", "two-colour"):
            assert oc != wc and os_ == ws and wc not in {o[0] for o in objs}, c
        elif c["kind"] in ("shape-swap", "two-shape"):
            assert oc == wc and os_ != ws, c
        if c["mode"] in ("swap", "reweight"):
            assert len(source.split()) == len(c["target"].split()), c
        blend = [w.strip() for w in c["blend_words"].split(",")]
        assert blend and all(w in source.split() + c["target"].split() for w in blend), c
        if c["mode"] == "reweight":
            assert c["reweight_words"] == wc and float(c["reweight_scales"]) > 1, c
        video, truth = world.render(spec)
        assert video.shape[0] == spec.frames and len(truth["objects"]) == len(objs)


def test_report_gives_edit_success_on_drawable_cases_beside_the_overall():
    m = lambda ok: {"recon_psnr": 30.0, "edit_success": ok, "bg_psnr": 30.0, "flicker": 0.1,  # noqa: E731
                    "seconds": 1.0, "invert_seconds": 1.0}
    results = {"colour-swap-s0-0": {"video-p2p": m(0.5)}, "colour-swap-s0-1": {"video-p2p": m(1.0)},
               "two-shape-s0-0": {"video-p2p": m(0.0)}}
    t2i = {"colour-swap-s0-0": 0.9, "colour-swap-s0-1": 0.7, "two-shape-s0-0": 0.8}
    md = quality.report(results, ["video-p2p"], 3, "x", t2i=t2i)[1]
    assert "2 cases drawable (rate >= 0.8), mean rate 0.85 there" in md
    assert "colour-swap 1/2, two-shape 1/1" in md
    assert "| video-p2p | 0.50 | 0.25 | 0.29 |" in md          # all, drawable, 0.25 / 0.85
    assert "drawable" not in quality.report(results, ["video-p2p"], 3, "x")[1]


def test_edit_probe_table_means_per_setting_and_drawable_split():
    import edit_probe
    m = lambda ok, keep=None: dict({"edit_success": ok, "bg_psnr": 30.0, "flicker": 1.0},  # noqa: E731
                                   **({"keep_psnr": 20.0, "keep_rate": keep} if keep is not None else {}))
    rows = {"shape-swap-s1-0": {"t2i": 0.9, "default": m(0.5), "self-0.2": m(1.0)},
            "two-colour-s1-0": {"t2i": 0.5, "default": m(0.0, keep=1.0)}}     # no self-0.2 line (did not finish)
    md = edit_probe.table(rows, ["default", "self-0.2"])
    assert md.startswith("2 cases, 1 drawable (t2i >= 0.8)")
    assert "| default | 0.25 | 0.50 | 30.0 | 1.00 | 20.0 | 1.00 |" in md
    assert "| self-0.2 | 1.00 | 1.00 | 30.0 | 1.00 | nan | nan |" in md
    assert set(edit_probe.SETTINGS) >= {"default", "word-0", "blend-changed", "self-0.2"}


def test_goals_table_judges_each_goal_on_the_cases_that_have_it():
    m = lambda ok, bg, fl, **kw: dict({"recon_psnr": 30.0, "edit_success": ok, "bg_psnr": bg, "flicker": fl,  # noqa: E731
                                       "seconds": 1.0, "invert_seconds": 1.0}, **kw)
    results = {"colour-swap-s0-0": {"direct-inversion": m(0.9, 30.0, 1.0), "ddim+target": m(1.0, 26.0, 3.0),
                                    "image-p2p": m(1.0, 29.0, 2.0)},
               "two-shape-s0-0": {"direct-inversion": m(0.5, 25.0, 2.0, keep_psnr=27.0, keep_rate=1.0),
                                  "ddim+target": m(0.5, 23.0, 2.0, keep_psnr=20.0, keep_rate=0.5)}}
    t2i = {"colour-swap-s0-0": 1.0, "two-shape-s0-0": 0.5}
    md = quality.goals(results, t2i)
    assert "| drawable cases: edit success >= 0.90 of the t2i rate | 0.90 | 1 | held |" in md
    assert "| background >= 3 dB above ddim+target | +3.0 dB | 2 | held |" in md          # (4 + 2) / 2
    assert "| flicker <= 0.6x image-p2p | 0.50x | 1 | held |" in md
    assert "| two objects: the other one keeps >= 28 dB | 27.0 dB | 1 | not held |" in md
    assert "| two objects: keep rate >= 0.95 | 1.00 | 1 | held |" in md
    del results["colour-swap-s0-0"]["image-p2p"]
    assert "| flicker <= 0.6x image-p2p | - | 0 | not measured |" in quality.goals(results, t2i)
    assert "Goals of issue 38" in quality.report(results, ["direct-inversion", "ddim+target"], 2, "x", t2i=t2i)[1]


def test_blend_own_reads_the_changed_word_at_its_own_place_only():
    from vp2p_core import seq_aligner as sa
    ids = {}
    encode = lambda w: [ids.setdefault(w, len(ids) + 1)]          # noqa: E731  one token per word
    src = "a orange triangle and a red circle on a noisy gray background"
    tgt = "a orange circle and a red circle on a noisy gray background"
    assert sa.token_indices(encode, tgt, "circle") == [3, 7]      # the blend word marks both objects
    assert sa.changed_positions(encode, src, tgt) == ({3}, {3})
    src2 = "a red circle on a striped gray background"
    tgt2 = "a red circle and a blue square on a striped gray background"
    s, t = sa.changed_positions(encode, src2, tgt2)
    assert s == set() and t == {4, 5, 6, 7}                            # refine: the added words
