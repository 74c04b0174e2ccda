"""The harness itself: the pack loads through ComfyUI's loader; executor and HTTP server agree."""
import glob
import os

import safetensors.torch
import torch

import comfy_host
import devkit as tl


def test_pack_loaded_by_comfyui_loader(host):
    import nodes
    pack = host["pack"]
    assert pack.WEB_DIRECTORY == "./web"
    assert os.path.isdir(os.path.join(os.path.dirname(pack.__file__), "web"))
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert nodes.NODE_CLASS_MAPPINGS[key] is cls, key
        assert key in pack.NODE_DISPLAY_NAME_MAPPINGS
        assert isinstance(cls.INPUT_TYPES(), dict) and hasattr(cls, cls.FUNCTION)
        assert cls.CATEGORY.startswith("video-p2p")


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
        for name in tl.pack_nodes.NODE_CLASS_MAPPINGS:
            assert name in info, name
        srv.run(prompt)
    files = glob.glob(str(outdir / "vp2p_test" / "core*.latent"))
    assert len(files) == 1
    served = safetensors.torch.load_file(files[0])["latent_tensor"]
    assert torch.equal(served, lat), (served - lat).abs().max()


def test_different_seed_differs(tiny_ckpt):
    a = comfy_host.run_prompt(tl.core_graph(tiny_ckpt, seed=1))["5"][0]["samples"]
    b = comfy_host.run_prompt(tl.core_graph(tiny_ckpt, seed=2))["5"][0]["samples"]
    assert not torch.allclose(a, b)
