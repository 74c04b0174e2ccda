"""Shared setup for the benchmark scripts: boot ComfyUI in-process and build models."""
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.join(REPO, "tests"))


def boot():
    import comfy_host
    comfy_host.boot()
    import vp2p_testlib
    return comfy_host, vp2p_testlib


def tiny_models(**unet_kw):
    _, tl = boot()
    d = tempfile.mkdtemp(prefix="vp2p_bench_")
    tl.register_models_dir(d)
    name = tl.make_tiny_checkpoint(d, name="bench_tiny.safetensors", **unet_kw)
    return tl.load_ckpt(name)


def timed(fn, repeat=1):
    best = None
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, out


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
