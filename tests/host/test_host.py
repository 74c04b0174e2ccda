"""The harness itself: the pack loads through ComfyUI's loader; executor and HTTP server agree."""
import glob
import json
import os

import pytest
import safetensors.torch
import torch

from vp2p_dev import comfy_host
from vp2p_dev import devkit as tl


RESEARCH_GRADE = {"VP2PInflateT2SModel", "VP2PTuneOnVideo", "VP2PSharedNullTextInvert", "VP2PController",
                  "VP2PDecoupledSampler", "VP2PDecoupledGuider"}


def test_pack_loaded_by_comfyui_loader(host):
    """ComfyUI's loader took the V3 entry point (it reads comfy_entrypoint only when a module has no
    NODE_CLASS_MAPPINGS): every listed class is registered under its schema's id and display name."""
    import nodes
    from comfy_api.v0_0_2 import ComfyExtension, io
    pack = host["pack"]
    assert pack.WEB_DIRECTORY == "./web"
    assert os.path.isdir(os.path.join(os.path.dirname(pack.__file__), "web"))
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    extension = host["loop"].run_until_complete(pack.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension)
    listed = host["loop"].run_until_complete(extension.get_node_list())
    assert listed == list(tl.pack_nodes.NODES) and len(listed) == 15
    ids = set()
    for cls in listed:
        schema = cls.GET_SCHEMA()
        ids.add(schema.node_id)
        assert issubclass(cls, io.ComfyNode)
        assert nodes.NODE_CLASS_MAPPINGS[schema.node_id] is cls, schema.node_id
        assert nodes.NODE_DISPLAY_NAME_MAPPINGS[schema.node_id] == schema.display_name
        assert schema.category.startswith("video-p2p") and schema.description
        assert schema.is_experimental == (schema.node_id in RESEARCH_GRADE), schema.node_id
        for item in list(schema.inputs) + list(schema.outputs):          # every socket and widget explains itself
            assert item.tooltip, f"{schema.node_id}: {getattr(item, 'id', None) or item.display_name}"
    assert RESEARCH_GRADE <= ids


def test_combo_values_are_checked_before_anything_runs(host):
    """V1 combos were checked by ComfyUI's validator; the nodes' validate_inputs keeps that for V3."""
    toy = {"1": {"class_type": "VP2PToyWorldVideo",
                 "inputs": {"shape": "circle", "colour": "red", "background": "striped", "background_colour": "gray",
                            "frames": 2, "size": 32, "start_x": 0.3, "start_y": 0.5, "end_x": 0.7, "end_y": 0.5,
                            "radius": 0.22, "end_radius": 0.22, "texture_seed": 0}},
           "2": {"class_type": "VP2PToyWorldOracle", "inputs": {"images": ["1", 0]}}}
    out = comfy_host.run_prompt(toy)
    assert out["1"][0].shape == (2, 32, 32, 3) and out["1"][1] == "a red circle on a striped gray background"
    toy["1"]["inputs"]["colour"] = "ultraviolet"
    with pytest.raises(RuntimeError, match="colour must be one of .*ultraviolet"):
        comfy_host.run_prompt(toy)
    toy["1"]["inputs"]["colour"] = "red"
    toy["1"]["inputs"]["frames"] = 0                     # ComfyUI's own min/max checks still apply
    with pytest.raises(RuntimeError, match="smaller than min"):
        comfy_host.run_prompt(toy)


def test_toy_world_video_two_objects_and_rotation(host):
    """The optional inputs add a turning first object and a second object: the caption names
    both (first one first), each mask is that object's visible coverage, and a prompt without
    the new inputs renders as before (old workflows)."""
    base = {"shape": "square", "colour": "red", "background": "noisy", "background_colour": "teal", "frames": 3,
            "size": 64, "start_x": 0.3, "start_y": 0.6, "end_x": 0.35, "end_y": 0.6, "radius": 0.15,
            "end_radius": 0.15, "texture_seed": 4}
    two = dict(base, rotation=0.0, end_rotation=45.0, second_shape="circle", second_colour="yellow",
               second_start_x=0.75, second_start_y=0.3, second_end_x=0.7, second_end_y=0.35, second_radius=0.12)
    def render(inputs):
        out = comfy_host.run_prompt({"1": {"class_type": "VP2PToyWorldVideo", "inputs": inputs},
                                     "2": {"class_type": "VP2PToyWorldOracle", "inputs": {"images": ["1", 0]}}})
        return out["1"], json.loads(out["2"][0])
    (old, old_report), (new, report) = render(base), render(two)
    assert [o["colour"] for o in old_report[0]["objects"]] == ["red"]
    for row in report:       # the oracle reads both objects, the largest first
        assert sorted((o["colour"], o["shape"]) for o in row["objects"]) == [("red", "square"), ("yellow", "circle")]
        assert (row["colour"], row["shape"]) == (row["objects"][0]["colour"], row["objects"][0]["shape"])
    assert old[1] == "a red square on a noisy teal background"
    assert new[1] == "a red square and a yellow circle on a noisy teal background"
    assert len(old) == 5 and old[4].abs().max() == 0
    first, second = new[2], new[4]
    assert (first > 0.5).any(dim=(1, 2)).all() and (second > 0.5).any(dim=(1, 2)).all()
    assert float((first * second).sum()) == 0.0
    assert torch.equal(old[2][0], first[0])                     # same square in frame 0 (no turn yet)
    assert not torch.equal(old[2][-1], first[-1])               # turned by 45 degrees at the end
    yellow = torch.tensor(tl.toy.world.COLOURS["yellow"]) / 255.0
    inside = new[0][second >= 1.0]
    assert torch.allclose(inside, yellow.expand_as(inside), atol=0.5 / 255)
    spec = tl.toy.world.WorldSpec.from_dict(json.loads(new[3]))
    assert spec.second.colour == "yellow" and spec.rotation == (0.0, 45.0)


def test_core_graph_executor_matches_http_server(tiny_ckpt, models_dir, tmp_path):
    prompt = tl.core_graph(tiny_ckpt)
    out = comfy_host.run_prompt(prompt, outputs=["6", "7"])
    lat = out["5"][0]["samples"]
    img = out["6"][0]
    assert lat.shape == (2, 4, 8, 8) and img.shape == (2, 64, 64, 3)
    assert torch.isfinite(lat).all() and lat.std() > 0
    # same graph again: ComfyUI's seeded noise makes it bit-reproducible in-process
    prompt2 = tl.core_graph(tiny_ckpt, seed=1)
    prompt2["7"]["inputs"]["filename_prefix"] = "vp2p_test/core2"
    out2 = comfy_host.run_prompt(prompt2)
    assert torch.equal(out2["5"][0]["samples"], lat)

    yaml = tl.extra_model_paths_yaml(models_dir)
    outdir = tmp_path / "server_out"
    with comfy_host.ComfyServer(extra_model_paths=yaml, log_path=str(tmp_path / "server.log"),
                                extra_args=["--output-directory", str(outdir)]) as srv:
        info = srv.get_json("/object_info")
        for cls in tl.pack_nodes.NODES:
            name = cls.GET_SCHEMA().node_id
            assert name in info, name
            assert info[name]["experimental"] == (name in RESEARCH_GRADE), name
        srv.run(prompt)
    files = glob.glob(str(outdir / "vp2p_test" / "core*.latent"))
    assert len(files) == 1
    served = safetensors.torch.load_file(files[0])["latent_tensor"]
    assert torch.equal(served, lat), (served - lat).abs().max()


def test_different_seed_differs(tiny_ckpt):
    a = comfy_host.run_prompt(tl.core_graph(tiny_ckpt, seed=1))["5"][0]["samples"]
    b = comfy_host.run_prompt(tl.core_graph(tiny_ckpt, seed=2))["5"][0]["samples"]
    assert not torch.allclose(a, b)
