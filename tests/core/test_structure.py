"""The code's structure, read from the source (no ComfyUI): imports point down the floors, one
versioned API, and the table of inversion modes is what core's inversion does."""
import ast
import os

import pytest
import torch

from vp2p_core import inversion as inv
from vp2p_core.schedule import ddim_uniform

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = ("vp2p_core", "vp2p_toy", "vp2p_host", "nodes")


def imports(folder):
    """{file: [(module, level)]} of every import in a pack folder."""
    out = {}
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if name.endswith(".py"):
            path = os.path.join(folder, name)
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            out[path] = [(a.name, 0) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names] + \
                [(n.module or "", n.level) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    return out


def pack_floor(module, level):
    """The pack folder an import reaches ('..vp2p_host.x' -> vp2p_host), else None."""
    head = module.split(".")[0]
    return head if level >= 2 and head in PACK else None


@pytest.mark.parametrize("folder,allowed", [("vp2p_core", set()), ("vp2p_toy", set()),
                                            ("vp2p_host", {"vp2p_core", "vp2p_toy"})])
def test_imports_point_down(folder, allowed):
    bad = []
    for path, found in imports(folder).items():
        for module, level in found:
            floor = pack_floor(module, level)
            if (floor is not None and floor not in allowed) or module.split(".")[0] in ("nodes", "vp2p_dev") or \
                    (folder != "vp2p_host" and module.split(".")[0] in ("comfy", "comfy_api", "folder_paths")):
                bad.append(f"{path}: {'.' * level}{module}")
    assert bad == []


def test_one_versioned_api():
    """Nodes and host read ComfyUI's versioned API at the one pin, never `latest`."""
    used = {m for folder in ("nodes", "vp2p_host") for found in imports(folder).values()
            for m, _ in found if m.startswith("comfy_api")}
    assert used and all(m.startswith("comfy_api.v0_0_2") for m in used), used


def fake(ctx_scale=0.1):
    w = torch.linspace(0.6, 1.4, 4).view(1, 4, 1, 1)

    def denoise(x, sigma, ctx, is_cond):
        return x * w / (1 + sigma) + ctx.mean() * ctx_scale

    def cfg_denoise(x, sigma, cond, uncond, g):
        u = denoise(x, sigma, uncond, False)
        return u + (denoise(x, sigma, cond, True) - u) * g
    return denoise, cfg_denoise


@pytest.mark.parametrize("name", list(inv.MODES))
def test_each_mode_does_what_its_table_entry_says(name):
    mode = inv.MODES[name]
    sigmas = ddim_uniform(4)
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    cond, empty = torch.full((1, 3, 8), 0.5), torch.zeros(1, 3, 8)
    denoise, cfg_denoise = fake()
    with torch.enable_grad():
        res = inv.invert(denoise, cfg_denoise, x0, sigmas, cond, empty, 7.5, name, inner_iterations=2)
    n = len(sigmas) - 1
    assert (sum(res.iterations) > 0) == mode.optimises_null
    if not mode.optimises_null:
        base = cond if mode.nulls == "source" else empty
        assert torch.equal(res.nulls, base[None].repeat(n, 1, 1, 1))
    if mode.keeps_trajectory:
        assert torch.equal(res.reconstruction, res.trajectory[n])
    else:     # the reconstruction is the sampler's source branch: guided DDIM at the table's guidance
        recon, _ = inv.guided_ddim(cfg_denoise, res.x_T, sigmas, cond, res.nulls, mode.source_cfg(7.5))
        assert torch.equal(res.reconstruction, recon)
    assert mode.source_cfg(7.5) == (1.0 if mode.source_guidance == "1" else 7.5)


def test_mode_names_old_and_new():
    assert [m for m, spec in inv.MODES.items() if spec.offered] == ["direct-inversion", "null-text", "fast"]
    assert {m: inv.mode_named(m) for m in inv.MODES} == {m: m for m in inv.MODES}
    assert inv.mode_named("negative-prompt") == "fast" and inv.mode_named("exact") is None
    # version-1 files: their 'fast' was plain DDIM at CFG, their 'negative-prompt' today's fast
    assert inv.mode_named("fast", "1") == "ddim-cfg" and inv.mode_named("negative-prompt", "1") == "fast"
    assert inv.mode_named("null-text", "1") == "null-text" and inv.mode_named("negative-prompt", "2") is None
