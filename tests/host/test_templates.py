"""The real ComfyUI HTTP server (main.py) serves what the editor shows of this pack: its example
workflows and their thumbnails through the workflow-templates endpoints, its node help pages
under its web directory, and a clip uploaded with the editor's upload route loads in Load Video
(VP2P) and comes back as an H.264 mp4 with the workflow embedded."""
import glob
import json
import os
import urllib.request

import av
import pytest
import torch

from vp2p_dev import comfy_host
from vp2p_dev import devkit as tl
from vp2p_dev.devkit import REPO, WORKFLOWS

PACK = comfy_host.PACK_DIRNAME
THUMB_EXT = (".jpg",)      # what the editor asks for: /api/workflow_templates/<pack>/<name>.jpg


def get(srv, path):
    with urllib.request.urlopen(srv.url + path, timeout=30) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("templates")
    (base / "in").mkdir()
    with comfy_host.ComfyServer(log_path=str(base / "server.log"), extra_args=[
            "--output-directory", str(base / "out"), "--input-directory", str(base / "in")]) as srv:
        srv.base = base
        yield srv


def test_every_workflow_has_a_thumbnail():
    assert len(WORKFLOWS) >= 6
    for wf in WORKFLOWS:
        stem = os.path.splitext(wf)[0]
        thumbs = [stem + e for e in THUMB_EXT if os.path.exists(stem + e)]
        assert thumbs, f"no thumbnail for {os.path.basename(wf)} (run python -m vp2p_dev.make_thumbnails)"
        from PIL import Image
        with Image.open(thumbs[0]) as im:
            assert im.format == "JPEG" and im.size[0] >= 128


def test_server_lists_and_serves_the_workflows_as_templates(server):
    status, _, body = get(server, "/api/workflow_templates")
    listed = json.loads(body)
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in WORKFLOWS)
    assert sorted(listed.get(PACK, [])) == names, listed
    for name in names:
        _, _, body = get(server, f"/api/workflow_templates/{PACK}/{name}.json")
        with open(os.path.join(REPO, "workflows", f"{name}.json"), encoding="utf-8") as f:
            assert json.loads(body) == json.load(f)
        thumb = next(p for p in (os.path.join(REPO, "workflows", name + e) for e in THUMB_EXT) if os.path.exists(p))
        status, ctype, body = get(server, f"/api/workflow_templates/{PACK}/{os.path.basename(thumb)}")
        assert status == 200 and ctype.startswith("image/")
        with open(thumb, "rb") as f:
            assert body == f.read()


def test_server_serves_the_node_help_pages(server):
    info = json.loads(get(server, "/object_info/VP2PLoadVideo")[2])["VP2PLoadVideo"]
    assert info["python_module"].endswith(PACK)
    for page in glob.glob(os.path.join(REPO, "web", "docs", "*.md")):
        status, _, body = get(server, f"/extensions/{PACK}/docs/{os.path.basename(page)}")
        with open(page, "rb") as f:
            assert status == 200 and body == f.read()


def test_uploaded_clip_round_trip_with_workflow_metadata(server):
    import requests
    vio = tl.host.video_io
    clip = server.base / "clip.mp4"
    frames = torch.linspace(0, 1, 6)[:, None, None, None].expand(6, 32, 48, 3).contiguous()
    vio.write_mp4(str(clip), frames, 6.0)
    with open(clip, "rb") as f:     # what the editor's upload button sends
        r = requests.post(server.url + "/upload/image", files={"image": ("my clip.mp4", f, "video/mp4")},
                          data={"type": "input"}, timeout=30)
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    kind, opts = json.loads(get(server, "/object_info/VP2PLoadVideo")[2])["VP2PLoadVideo"]["input"]["required"][
        "video"]
    assert kind == "COMBO" and name in opts["options"] and opts["video_upload"] is True
    prompt = {
        "1": {"class_type": "VP2PLoadVideo", "inputs": {
            "video": name, "path": "", "frame_start": 0, "frame_count": 4, "stride": 1, "width": 0, "height": 0,
            "multiple_of": 8, "resize_mode": "crop"}},
        "2": {"class_type": "VP2PSaveVideo", "inputs": {"images": ["1", 0], "fps": ["1", 1],
                                                        "filename_prefix": "vp2p/served", "format": "mp4"}},
    }
    workflow = {"nodes": [{"id": 1, "type": "VP2PLoadVideo"}, {"id": 2, "type": "VP2PSaveVideo"}], "links": []}
    pid = server.post_json("/prompt", {"prompt": prompt, "client_id": "vp2p-tests",
                                       "extra_data": {"extra_pnginfo": {"workflow": workflow}}})["prompt_id"]
    import time
    deadline = time.time() + 120
    while time.time() < deadline:
        hist = server.get_json(f"/history/{pid}")
        if pid in hist:
            break
        time.sleep(0.25)
    entry = hist[pid]
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = entry["outputs"]["2"]["images"][0]
    assert saved["filename"].endswith(".mp4") and entry["outputs"]["2"]["animated"] == [True]
    status, ctype, body = get(server, f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}"
                                      f"&type=output")
    assert status == 200 and ctype == "video/mp4"                     # what the editor's preview plays
    path = server.base / "out" / saved["subfolder"] / saved["filename"]
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264" and vs.format.name == "yuv420p" and vs.frames == 4
        assert json.loads(c.metadata["workflow"]) == workflow
        assert json.loads(c.metadata["prompt"])["1"]["inputs"]["video"] == name
