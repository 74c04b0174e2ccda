"""Damaged pack files, where files are written, Load Video's memory and a folder of clips, in a
real ComfyUI; and the error table (error_cases.py) that docs/errors.md is written from, run
through ComfyUI's real validation and executor."""
import os

import av
import numpy as np
import pytest
import torch

import comfy_host
import devkit as tl
from vp2p_dev import error_cases


def write_clip(path, frames=6, h=48, w=64, shade=0):
    """A small mp4 (frame i has red level 20*i + shade) written with PyAV."""
    with av.open(path, mode="w") as out:
        vs = out.add_stream("libx264", rate=8)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "10"}
        for i in range(frames):
            x = np.zeros((h, w, 3), np.uint8)
            x[..., 0] = min(255, 20 * i + shade)
            x[8:24, 4 * i:16 + 4 * i, 1] = 255
            out.mux(vs.encode(av.VideoFrame.from_ndarray(x, format="rgb24")))
        out.mux(vs.encode(None))
    return path


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """(tuning path, inversion path): real files of the tiny checkpoint, saved by the pack."""
    import folder_paths
    d = tmp_path_factory.mktemp("saved")
    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(d))
    try:
        model, clip = tl.host.inflation.inflate(tiny[0], True, True, 0, 0), tiny[1]
        video = tl.video_latent(4, 8, 8)
        cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
        with torch.inference_mode():
            tuned = tl.host.tuning.tune_and_save(model, video, cond, 1, 1e-3, 0, "tuned", "off")
            inv, _ = tl.host.inversion.invert_video(tiny[0], video, cond, empty, 2, 7.5, "direct-inversion", 1)
        assert tuned is not None
        return (os.path.join(d, "video_p2p", "tuned_00001_.safetensors"),
                tl.host.inversion.save_inversion(inv, "inv"))
    finally:
        folder_paths.set_output_directory(old)


@pytest.fixture()
def ctx(tmp_path, outdir, indir, tiny_ckpt, saved):
    return error_cases.Ctx(tmp=str(tmp_path), outdir=outdir, indir=str(indir), ckpt=tiny_ckpt, tuning=saved[0],
                           inversion=saved[1], clip=write_clip)


# --------------------------------------------------------------------------- the error table
@pytest.mark.parametrize("case", error_cases.CASES, ids=[c.id for c in error_cases.CASES])
def test_error_table(case, ctx):
    """Each bad input of docs/errors.md, queued as a user would: refused at validation
    ('queue') or failing in the node ('run') with exactly the documented message."""
    built = case.build(ctx)
    prompt, after = built if isinstance(built, tuple) else (built, None)
    with pytest.raises(comfy_host.PromptFailed) as caught:
        comfy_host.run_prompt(prompt, after_validation=after)
    failed = caught.value
    assert (failed.exception_message is None) == (case.when == "queue"), failed
    messages = {m.split(" - ", 1)[-1].strip() for m in failed.messages()}   # validation: "<input> - <message>"
    assert len(messages) == 1, messages
    message = messages.pop()
    assert case.pattern().fullmatch(message), f"\n{message}\n!=\n{case.expect}"


def test_errors_doc_is_up_to_date():
    with open(error_cases.DOC, encoding="utf-8") as f:
        assert f.read() == error_cases.render(), "docs/errors.md is stale: run python -m vp2p_dev.error_cases"


# --------------------------------------------------------------------------- damaged files stay listed
def test_damaged_files_stay_in_the_loaders_lists(ctx):
    tuning, inversion = tl.host.tuning, tl.host.inversion
    error_cases.truncate(error_cases.store_copy(ctx, ctx.tuning, "cut.safetensors"))
    error_cases.zero(error_cases.store_copy(ctx, ctx.tuning, "sub/empty.safetensors"))
    error_cases.foreign(error_cases.store_copy(ctx, ctx.tuning, "lora.safetensors"))
    error_cases.store_copy(ctx, ctx.tuning, "good_t.safetensors")
    error_cases.store_copy(ctx, ctx.inversion, "good_i.safetensors")
    # damaged files are offered by both loaders (their format cannot be read); a readable file of
    # another format (the LoRA, the other loader's files) is not
    assert tuning.list_tunings() == ["cut.safetensors", "good_t.safetensors", "sub/empty.safetensors"]
    assert inversion.list_inversions() == ["cut.safetensors", "good_i.safetensors", "sub/empty.safetensors"]
    spec = tl.pack_nodes.model.VP2PLoadTuning.INPUT_TYPES()["required"]["tuning_file"]
    assert spec[1]["options"] == tuning.list_tunings()
    assert tl.pack_nodes.model.VP2PLoadTuning.validate_inputs(tuning_file="good_t.safetensors") is True
    assert tl.pack_nodes.inversion.VP2PLoadInversion.validate_inputs(inversion_file="good_i.safetensors") is True
    msg = tl.pack_nodes.model.VP2PLoadTuning.validate_inputs(tuning_file="sub/empty.safetensors")
    assert msg.startswith("Load Video Tuning: the tuning file 'sub/empty.safetensors' is damaged: it is empty")


# --------------------------------------------------------------------------- where files are written
def test_empty_prefix_keeps_every_run(ctx, outdir):
    """An empty / whitespace prefix takes the node's default: two runs in a row keep both
    files (core's rule would write output/._00001_ twice)."""
    for prefix in ("", "   "):
        comfy_host.run_prompt(error_cases.save_video(ctx, prefix))
    assert sorted(os.listdir(os.path.join(outdir, "video_p2p"))) == ["edit_00001_.gif", "edit_00002_.gif"]
    comfy_host.run_prompt(error_cases.save_video(ctx, "shots/"))     # a folder only: the default name in it
    assert os.listdir(os.path.join(outdir, "shots")) == ["edit_00001_.gif"]
    name = os.path.basename(error_cases.store_copy(ctx, ctx.inversion, "i.safetensors"))
    for prefix in ("", " \t"):
        g = error_cases.load_inversion(ctx, name)
        g["9"]["inputs"]["filename_prefix"] = prefix
        comfy_host.run_prompt(g)
    saved = sorted(f for f in os.listdir(os.path.join(outdir, "video_p2p")) if f.startswith("inversion"))
    assert saved == ["inversion_00001_.safetensors", "inversion_00002_.safetensors"]
    assert not [f for f in os.listdir(outdir) if f.startswith(".")]


def test_output_prefix_rules(outdir):
    rule = tl.host.store.output_prefix
    assert rule("a/b", "x/edit") == "a/b" and rule("%year%/b", "edit") == "%year%/b"
    assert rule("", "x/edit") == "x/edit" and rule("a/..", "x/edit") == "edit" and rule("a/./", "x/e") == "a/e"
    for bad in ("/abs/x", "../x", "a/../../x", "C:/x"):
        with pytest.raises(tl.InputError, match="output folder"):
            rule(bad, "edit")


# --------------------------------------------------------------------------- Load Video reads frame by frame
def test_frames_resized_as_read_equal_resizing_afterwards(tmp_path):
    """Resizing each frame as it is decoded gives exactly what resizing the decoded batch gave,
    and the batch is one allocation of the output's size (nothing of the source's size kept)."""
    io_ = tl.host.video_io
    path = write_clip(str(tmp_path / "c.mp4"), frames=9, h=60, w=84)
    full, fps, _ = io_.read_file(path, 1, 4, 2)
    assert full.shape == (4, 60, 84, 3) and fps == 4.0
    for size in ((32, 32, 8, "crop"), (40, 0, 8, "stretch"), (0, 24, 8, "crop")):
        out, _, _ = io_.read_file(path, 1, 4, 2, size=size)
        assert torch.equal(out, io_.resize(full, *size)), size
        assert out.untyped_storage().nbytes() == out.numel() * 4        # exactly the output's bytes
    all_frames, _, _ = io_.read_file(path, 0, 0, 3, size=(16, 16, 8, "crop"))
    assert all_frames.shape[0] == 3 and all_frames.untyped_storage().nbytes() == all_frames.numel() * 4
    # a folder of frames of different sizes loads once width and height are both set
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image
    for i, (w, h) in enumerate(((40, 30), (44, 30))):
        Image.new("RGB", (w, h), (10 * i, 0, 0)).save(folder / f"{i}.png")
    out, _ = io_.read_folder(str(folder), size=(16, 16, 8, "stretch"))
    assert out.shape == (2, 16, 16, 3)
    with pytest.raises(io_.VideoReadError, match="different sizes"):
        io_.read_folder(str(folder), size=(16, 0, 8, "stretch"))


# --------------------------------------------------------------------------- a folder of clips
def test_folder_of_clips_one_per_queue(ctx, indir):
    """clip_folder + clip_index (incremented by the editor after each queue): run k loads clip
    k of the folder in natural order, exactly as loading that file by path."""
    folder = os.path.join(indir, "shots")
    os.makedirs(folder)
    for i, name in enumerate(("shot_2.mp4", "shot_10.mp4", "shot_1.mp4")):
        write_clip(os.path.join(folder, name), frames=3, shade=60 * i)
    os.makedirs(os.path.join(folder, "notes"))                      # a folder without frames: not a clip
    assert tl.host.video.clip_files(folder) == ["shot_1.mp4", "shot_2.mp4", "shot_10.mp4"]
    spec = tl.pack_nodes.video.VP2PLoadVideo.INPUT_TYPES()["optional"]
    assert spec["clip_index"][1]["control_after_generate"] is True and spec["clip_folder"][1]["default"] == ""
    marks = []
    for k, name in enumerate(("shot_1.mp4", "shot_2.mp4", "shot_10.mp4")):
        got = comfy_host.run_prompt(error_cases.load_video(ctx, clip_folder="shots", clip_index=k,
                                                           width=32, height=32))["1"][0]
        by_path = comfy_host.run_prompt(error_cases.load_video(ctx, path=os.path.join(folder, name),
                                                               width=32, height=32))["1"][0]
        assert torch.equal(got, by_path)
        marks.append(round(float(got[0, ..., 0].mean()), 2))
    assert marks[0] > marks[2] > marks[1]           # shades 120, 0, 60: natural name order
    fp = tl.pack_nodes.video.VP2PLoadVideo.fingerprint_inputs
    assert fp("(none)", "", "shots", 0) != fp("(none)", "", "shots", 1)
