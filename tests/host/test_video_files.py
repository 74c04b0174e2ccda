"""Load Video / Save Video / Side By Side (VP2P) in a real ComfyUI, and both directions with
core's video nodes (LoadVideo, GetVideoComponents, CreateVideo, SaveVideo). Files are checked
with PyAV directly (codec, pixel format, audio channels, metadata tags)."""
import json
import os
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

import comfy_host
import devkit as tl

SR = 16000
FREQS = (440.0, 1000.0)      # left, right: tells the channels apart after AAC


def synthetic(frames=6, h=48, w=64):
    x = np.zeros((frames, h, w, 3), np.uint8)
    for i in range(frames):
        x[i, :, :, 0] = 20 * i
        x[i, 10:30, 3 * i:20 + 3 * i, 1] = 255
    return x


def stereo(seconds):
    t = torch.arange(int(round(SR * seconds))) / SR
    wave = torch.stack([0.5 * torch.sin(2 * torch.pi * f * t) for f in FREQS])
    return {"waveform": wave[None], "sample_rate": SR}


def dominant_hz(channel, sr):
    spec = np.abs(np.fft.rfft(np.asarray(channel, np.float64)))
    return np.fft.rfftfreq(len(channel), 1 / sr)[int(spec.argmax())]


def assert_same_sound(audio, seconds, tol_s=0.08):
    wave = audio["waveform"]
    assert wave.ndim == 3 and wave.shape[:2] == (1, 2), wave.shape
    assert abs(wave.shape[-1] / audio["sample_rate"] - seconds) < tol_s, (wave.shape, audio["sample_rate"], seconds)
    for ch, f in enumerate(FREQS):
        assert abs(dominant_hz(wave[0, ch].float().numpy(), audio["sample_rate"]) - f) < 5, (ch, f)


def save_node(prompt=None, extra_pnginfo=None):
    """Save Video (VP2P) as ComfyUI's executor runs it: a clone of the class holding the hidden inputs."""
    from comfy_api.v0_0_2 import io
    hidden = {io.Hidden.prompt: prompt, io.Hidden.extra_pnginfo: extra_pnginfo}
    # ComfyUI 0.8 passes the executor's "v3 data" (hidden inputs under "hidden_inputs"); 0.3.x the hidden dict
    node = tl.pack_nodes.video.VP2PSaveVideo
    holder = sys.modules[node.PREPARE_CLASS_CLONE.__func__.__module__].HiddenHolder
    return node.PREPARE_CLASS_CLONE({"hidden_inputs": hidden} if hasattr(holder, "from_v3_data") else hidden)


def save_clip(frames=12, fps=8.0, audio=True, prefix="vp2p/clip", **hidden):
    images = tl.host.video.to_image(synthetic(frames))
    out = save_node(**hidden).execute(images, fps, prefix, "mp4", audio=stereo(frames / fps) if audio else None)
    return images, out


def test_save_writes_browser_mp4_with_audio_and_workflow(outdir):
    workflow = {"nodes": [{"id": 1, "type": "VP2PSaveVideo"}], "links": [], "version": 0.4}
    prompt = {"1": {"class_type": "VP2PSaveVideo", "inputs": {}}}
    images, out = save_clip(extra_pnginfo={"workflow": workflow}, prompt=prompt)
    path, video = out.result
    assert out.ui["images"][0]["filename"] == os.path.basename(path) and path.endswith(".mp4")
    assert out.ui["animated"] == (True,)
    with av.open(path) as c:
        vs, aus = c.streams.video[0], c.streams.audio[0]
        assert vs.codec_context.name == "h264" and vs.format.name == "yuv420p"
        assert (vs.width, vs.height) == (64, 48) and abs(float(vs.average_rate) - 8.0) < 1e-6
        assert aus.codec_context.name == "aac" and aus.channels == 2
        assert json.loads(c.metadata["workflow"]) == workflow and json.loads(c.metadata["prompt"]) == prompt
    # the VIDEO output is core's type and carries the same file, sound included
    comp = video.get_components()
    assert comp.images.shape == (12, 48, 64, 3) and float(comp.frame_rate) == 8.0
    assert (comp.images - images).abs().mean() < 0.03
    assert_same_sound(comp.audio, 12 / 8.0)


def test_load_range_stride_resize_and_audio_span(outdir):
    _, out = save_clip(frames=12, fps=8.0)
    path = out.result[0]
    res = comfy_host.run_prompt({"1": {"class_type": "VP2PLoadVideo", "inputs": {
        "video": "(none)", "path": path, "frame_start": 1, "frame_count": 3, "stride": 2, "width": 0, "height": 0,
        "multiple_of": 8, "resize_mode": "crop"}}, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}},
        outputs=["1"])
    images, fps, count, audio = res["1"]
    assert count == 3 and images.shape == (3, 48, 64, 3) and abs(fps - 4.0) < 1e-6
    got = (images.numpy() * 255).round()            # lossy codec: close to frames 1, 3, 5
    assert np.abs(got - synthetic(12)[[1, 3, 5]].astype(np.float64)).mean() < 6
    assert_same_sound(audio, 3 * 2 / 8.0)            # the time span of the loaded frames
    images, _, _, _ = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", path, 0, 0, 1, 40, 0, 8, "stretch").result
    assert images.shape == (12, 24, 40, 3)           # width 40, aspect kept, rounded to 8
    images, _, _, _ = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", path, 0, 2, 1, 32, 32, 8, "crop").result
    assert images.shape == (2, 32, 32, 3)            # centre crop keeps the middle of the frame
    ref = torch.nn.functional.interpolate(tl.host.video.to_image(synthetic(2)).movedim(-1, 1), size=(32, 43), mode="area")
    assert (images - ref.movedim(1, -1)[:, :, 5:37]).abs().mean() < 0.05


def test_core_load_video_into_vp2p_and_back_to_core(outdir, indir):
    """core LoadVideo -> Load Video (VP2P) (VIDEO input) -> Save Video (VP2P) with its audio ->
    core GetVideoComponents and core SaveVideo."""
    _, out = save_clip(frames=12, fps=8.0)
    os.replace(out.result[0], indir / "clip.mp4")
    load = {"video": "(none)", "path": "", "frame_start": 2, "frame_count": 4, "stride": 2, "width": 0,
            "height": 0, "multiple_of": 8, "resize_mode": "crop"}
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "2": {"class_type": "VP2PLoadVideo", "inputs": dict(load, video_input=["1", 0])},
        "3": {"class_type": "VP2PSaveVideo", "inputs": {"images": ["2", 0], "fps": ["2", 1], "audio": ["2", 3],
                                                        "filename_prefix": "vp2p/relay", "format": "mp4"}},
        "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 1]}},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["3", 1], "filename_prefix": "vp2p/core",
                                                    "format": "auto", "codec": "auto"}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    res = comfy_host.run_prompt(prompt)
    images, fps, count, audio = res["2"]
    by_path = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", str(indir / "clip.mp4"), 2, 4, 2, 0, 0, 8, "crop").result
    assert count == 4 and torch.equal(images, by_path[0]) and fps == by_path[1] == 4.0
    assert_same_sound(audio, 4 * 2 / 8.0)
    core_images, core_audio, core_fps = res["4"]                # core reads our file
    assert core_images.shape == (4, 48, 64, 3) and core_fps == 4.0
    assert (core_images - images).abs().mean() < 0.03
    assert_same_sound(core_audio, 1.0)
    core_file = res["_ui"]["5"]["images"][0]
    with av.open(os.path.join(outdir, core_file["subfolder"], core_file["filename"])) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].channels == 2
        assert c.streams.video[0].frames == 4


def test_core_create_video_into_vp2p(outdir):
    """core CreateVideo (frames + audio, no file) -> Load Video (VP2P): exact frames, sliced sound."""
    frames = tl.host.video.to_image(synthetic(10))
    audio = stereo(10 / 5.0)
    core = tl.host.compat
    video = core.VideoFromComponents(core.VideoComponents(images=frames, frame_rate=Fraction(5), audio=audio))
    images, fps, count, got_audio = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", "", 3, 3, 2, 0, 0, 8, "crop",
                                                              video_input=video).result
    assert count == 3 and torch.equal(images, frames[[3, 5, 7]]) and fps == 2.5
    start, stop = int(3 / 5.0 * SR), int((3 + 6) / 5.0 * SR)
    assert torch.equal(got_audio["waveform"], audio["waveform"][..., start:stop])
    res = comfy_host.run_prompt({
        "1": {"class_type": "VP2PToyWorldVideo", "inputs": {
            "shape": "circle", "colour": "red", "background": "striped", "background_colour": "gray", "frames": 6,
            "size": 64, "start_x": 0.3, "start_y": 0.5, "end_x": 0.7, "end_y": 0.5, "radius": 0.22,
            "end_radius": 0.22, "texture_seed": 0}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 12.0}},
        "3": {"class_type": "VP2PLoadVideo", "inputs": {
            "video": "(none)", "path": "", "frame_start": 0, "frame_count": 0, "stride": 1, "width": 32,
            "height": 32, "multiple_of": 8, "resize_mode": "stretch", "video_input": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    })
    images, fps, count, audio = res["3"]
    assert images.shape == (6, 32, 32, 3) and fps == 12.0 and audio is None
    ref = torch.nn.functional.interpolate(res["1"][0].movedim(-1, 1), size=(32, 32), mode="bilinear",
                                          antialias=True, align_corners=False).movedim(1, -1)
    assert torch.allclose(images, ref.clamp(0, 1), atol=1e-6)


def test_upload_widget_and_input_listing(indir):
    (indir / "uploaded clip.mp4").write_bytes(b"")
    (indir / "frames").mkdir()
    Image.new("RGB", (8, 8)).save(indir / "frames" / "1.png")
    (indir / "3d").mkdir()                          # a folder without frames is not offered
    spec = tl.pack_nodes.video.VP2PLoadVideo.INPUT_TYPES()     # as the editor gets it (object_info)
    kind, opts = spec["required"]["video"]
    assert kind == "COMBO" and opts.get("video_upload") is True   # the editor adds its upload button to this combo
    assert opts["options"] == ["(none)", "frames", "uploaded clip.mp4"]
    assert spec["optional"]["video_input"][0] == "VIDEO"


def test_folder_natural_order_gif_webp(tmp_path, outdir):
    frames = synthetic(11)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i}.png")    # frame_10 sorts after frame_9
    images, fps, n, audio = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", str(folder), 0, 0, 1, 0, 0, 8, "crop").result
    assert n == 11 and audio is None and fps == 8.0
    assert torch.equal((images * 255).round().byte(), torch.from_numpy(frames))
    for fmt in ("gif", "webp"):
        out = tl.pack_nodes.video.VP2PSaveVideo.execute(images, 8.0, "vp2p/f", fmt)
        p, video = out.result
        assert os.path.getsize(p) > 0 and out.ui["images"][0]["filename"].endswith(fmt)
        assert torch.equal(video.get_components().images, images)
        back, fps, m, _ = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", p, 1, 0, 2, 0, 0, 8, "crop").result
        assert m == 5 and abs(fps - 4.0) < 0.2          # gif stores 10 ms steps
        if fmt == "webp":                           # lossless
            assert torch.equal(back, images[1::2])


def test_odd_sizes_are_padded_for_yuv420(outdir):
    path = tl.pack_nodes.video.VP2PSaveVideo.execute(torch.rand(3, 21, 33, 3), 8.0, "vp2p/odd", "mp4").result[0]
    with av.open(path) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (34, 22)


def test_side_by_side():
    a = torch.rand(3, 16, 16, 3)
    b = torch.rand(3, 32, 32, 3)
    out = tl.pack_nodes.video.VP2PSideBySide.execute(a, "", b=b, c=a).result[0]
    assert out.shape == (3, 16, 48, 3)
    assert torch.allclose(out[:, :, 32:], a, atol=1 / 255)
    labelled = tl.pack_nodes.video.VP2PSideBySide.execute(torch.zeros(2, 64, 64, 3), "edit").result[0]
    assert labelled.max() > 0.5 and labelled[:, 40:].max() == 0     # white label text at the top only
    with pytest.raises(tl.InputError, match=r"Side By Side.*frame counts"):
        tl.pack_nodes.video.VP2PSideBySide.execute(a, "", b=torch.rand(2, 16, 16, 3)).result


def test_errors(tmp_path, outdir):
    err = tl.InputError
    load = tl.pack_nodes.video.VP2PLoadVideo.execute
    with pytest.raises(err, match="Load Video.*does not exist"):
        load("(none)", str(tmp_path / "nope.mp4"), 0, 0, 1, 0, 0, 8, "crop")
    with pytest.raises(err, match=r"Load Video \(VP2P\): choose or upload"):
        load("(none)", "", 0, 0, 1, 0, 0, 8, "crop")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(err, match="Load Video.*bad.mp4.*corrupt or not a video"):
        load("(none)", str(bad), 0, 0, 1, 0, 0, 8, "crop")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(err, match="no images"):
        load("(none)", str(empty), 0, 0, 1, 0, 0, 8, "crop")
    p = tl.pack_nodes.video.VP2PSaveVideo.execute(tl.host.video.to_image(synthetic(3)), 8.0, "vp2p/e", "mp4").result[0]
    with pytest.raises(err, match="past the end"):
        load("(none)", p, 50, 0, 1, 0, 0, 8, "crop")
    with pytest.raises(err, match="Save Video.*no frames"):
        tl.pack_nodes.video.VP2PSaveVideo.execute(torch.zeros(0, 8, 8, 3), 8.0, "x", "gif")


def test_compat_finds_the_file_behind_core_video(outdir):
    """On every supported ComfyUI the loader reaches the file of core's VideoFromFile (so it
    decodes only the frames it keeps), whether the VIDEO holds a path or the bytes."""
    import io
    compat = tl.host.compat
    _, out = save_clip(frames=4, audio=False)
    path = out.result[0]
    assert compat.video_file_source(compat.VideoFromFile(path)) == path
    buf = io.BytesIO(open(path, "rb").read())
    buf.read(10)
    src = compat.video_file_source(compat.VideoFromFile(buf))
    assert src is buf and buf.tell() == 0
    images, _, n, audio = tl.pack_nodes.video.VP2PLoadVideo.execute("(none)", "", 1, 2, 1, 0, 0, 8, "crop",
                                                    video_input=compat.VideoFromFile(buf)).result
    assert n == 2 and audio is None and images.shape == (2, 48, 64, 3)
    frames = tl.host.video.to_image(synthetic(2))
    assert compat.video_file_source(compat.VideoFromComponents(
        compat.VideoComponents(images=frames, frame_rate=Fraction(8)))) is None
