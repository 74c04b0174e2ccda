"""Shared setup for the benchmark scripts: boot ComfyUI in-process and build models. The one
preamble of bench/: each script imports it (its own folder is on sys.path when run as
`python bench/x.py`), and it appends the repository root so that the maintainer package
vp2p_dev (comfy_host, devkit) imports."""
import os
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.append(REPO)


def boot():
    from vp2p_dev import comfy_host
    comfy_host.boot()
    from vp2p_dev import devkit
    return comfy_host, devkit


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


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled process RSS on CPU (MiB)."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")
        self.peak = 0.0

    def __enter__(self):
        import torch
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            import psutil
            self.proc = psutil.Process()
            self.base = self.proc.memory_info().rss
            self.max = self.base
            self.stop = False
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop:
            self.max = max(self.max, self.proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        import torch
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2 ** 20
        else:
            self.stop = True
            self.thread.join()
            self.max = max(self.max, self.proc.memory_info().rss)
            self.peak = (self.max - self.base) / 2 ** 20


def allocator_peak(fn):
    """Peak bytes live in torch's CPU allocator while `fn` runs, from the profiler's allocation
    events (every malloc/free the allocator reports, in time order): a measurement independent
    of MemTracker's view of the operators."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        pass  # warm the profiler once, so its own set-up is not in the measured run
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak
