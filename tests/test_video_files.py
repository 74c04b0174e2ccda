"""Load Video / Save Video / Side By Side (VP2P) in a real ComfyUI."""
import os

import cv2
import numpy as np
import pytest
import torch

import comfy_host
import vp2p_testlib as tl


def vf():
    return tl.pack("nodes.video_files")


def synthetic(frames=6, h=48, w=64):
    x = np.zeros((frames, h, w, 3), np.uint8)
    for i in range(frames):
        x[i, :, :, 0] = 40 * i
        x[i, 10:30, 5 + 5 * i:25 + 5 * i, 1] = 255
    return x


def test_mp4_round_trip_with_range_stride_resize(tmp_path, outdir):
    frames = synthetic()
    saved = vf().VP2PSaveVideo().save(vf().to_image(frames), 12.0, "vp2p/clip", "mp4")
    path = saved["result"][0]
    assert path.endswith(".mp4") and os.path.getsize(path) > 0
    assert saved["ui"]["images"][0]["filename"].endswith(".webp")          # animated preview for the UI
    out = comfy_host.run_prompt({"1": {"class_type": "VP2PLoadVideo", "inputs": {
        "video": "(none)", "path": path, "frame_start": 1, "frame_count": 2, "stride": 2, "width": 0, "height": 0,
        "multiple_of": 8, "resize_mode": "crop"}}, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}},
        outputs=["1"])
    images, fps, count = out["1"]
    assert count == 2 and images.shape == (2, 48, 64, 3) and abs(fps - 6.0) < 1e-6
    # lossy codec: the frames come back close to frames 1 and 3
    got = (images.numpy() * 255).round()
    assert np.abs(got - frames[[1, 3]].astype(np.float64)).mean() < 12
    images, _, _ = vf().VP2PLoadVideo().load("(none)", path, 0, 0, 1, 40, 0, 8, "stretch")
    assert images.shape == (6, 24, 40, 3)                   # width 40, aspect kept, rounded to 8


def test_folder_gif_webp(tmp_path, outdir):
    frames = synthetic(4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    images, fps, n = vf().VP2PLoadVideo().load("(none)", str(folder), 0, 0, 1, 0, 0, 8, "crop")
    assert n == 4 and torch.equal((images * 255).round().byte(), torch.from_numpy(frames))
    for fmt in ("gif", "webp"):
        p = vf().VP2PSaveVideo().save(images, 8.0, "vp2p/f", fmt)["result"][0]
        back, _, m = vf().VP2PLoadVideo().load("(none)", p, 0, 0, 1, 0, 0, 8, "crop") if fmt == "gif" else (None, 0, 4)
        assert m == 4 and os.path.getsize(p) > 0


def test_side_by_side():
    a = torch.rand(3, 16, 16, 3)
    b = torch.rand(3, 32, 32, 3)
    out = vf().VP2PSideBySide().combine(a, "x, y", b=b, c=a)[0]
    assert out.shape == (3, 16, 48, 3)
    with pytest.raises(tl.pack("nodes.unet_runner").NodeInputError, match=r"Side By Side.*frame counts"):
        vf().VP2PSideBySide().combine(a, "", b=torch.rand(2, 16, 16, 3))


def test_errors(tmp_path, outdir):
    err = tl.pack("nodes.unet_runner").NodeInputError
    load = vf().VP2PLoadVideo().load
    with pytest.raises(err, match="Load Video.*does not exist"):
        load("(none)", str(tmp_path / "nope.mp4"), 0, 0, 1, 0, 0, 8, "crop")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(err, match="Load Video"):
        load("(none)", str(bad), 0, 0, 1, 0, 0, 8, "crop")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(err, match="no images"):
        load("(none)", str(empty), 0, 0, 1, 0, 0, 8, "crop")
    p = vf().VP2PSaveVideo().save(vf().to_image(synthetic(3)), 8.0, "vp2p/e", "mp4")["result"][0]
    with pytest.raises(err, match="past the end"):
        load("(none)", p, 50, 0, 1, 0, 0, 8, "crop")
    with pytest.raises(err, match="Save Video.*no frames"):
        vf().VP2PSaveVideo().save(torch.zeros(0, 8, 8, 3), 8.0, "x", "gif")
