"""Boots a real ComfyUI (CPU) once per session and loads this pack through ComfyUI's own
custom-node loader; provides tiny seeded SD1.x models built with ComfyUI's classes."""
import os

import pytest

from vp2p_dev import comfy_host

comfy_host.boot(threads=int(os.environ.get("VP2P_TEST_THREADS", "0")) or None)

from vp2p_dev import devkit  # noqa: E402  (after the boot: it reaches the pack ComfyUI loaded)


@pytest.fixture(scope="session")
def host():
    return comfy_host.boot()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    devkit.register_models_dir(str(d))
    return str(d)


@pytest.fixture(scope="session")
def tiny_ckpt(models_dir):
    """Name of a random tiny SD1.x checkpoint file under a registered checkpoints folder."""
    return devkit.make_tiny_checkpoint(models_dir)


@pytest.fixture(scope="session")
def tiny(tiny_ckpt):
    """(MODEL, CLIP, VAE) of the tiny checkpoint, loaded exactly as the loader node does."""
    return devkit.load_ckpt(tiny_ckpt)


@pytest.fixture(scope="session")
def output_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("output"))


@pytest.fixture()
def indir(tmp_path):
    """ComfyUI's input folder pointed at a fresh temporary folder (a Path) for one test."""
    import folder_paths
    old = folder_paths.get_input_directory()
    d = tmp_path / "input"
    d.mkdir()
    folder_paths.set_input_directory(str(d))
    try:
        yield d
    finally:
        folder_paths.set_input_directory(old)


@pytest.fixture()
def outdir(tmp_path):
    """ComfyUI's output folder pointed at a fresh temporary folder for one test."""
    import folder_paths
    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        yield str(tmp_path)
    finally:
        folder_paths.set_output_directory(old)


@pytest.fixture(scope="module")
def prompts(tiny):
    """(source CONDITIONING, empty-prompt CONDITIONING) of the tiny CLIP."""
    return devkit.encode(tiny[1], "a red circle moving right"), devkit.encode(tiny[1], "")


@pytest.fixture(scope="module")
def inflated(tiny):
    """The tiny model inflated, its temporal attention set as if tuned (not the identity)."""
    return devkit.trained_like_inflation(tiny[0])


# Run on the first ComfyUI leg of `scripts/test.sh` only: they check the benchmark scripts and the
# toy model's own accuracy, which do not depend on the ComfyUI version and are the slowest files.
# test.sh sets VP2P_REPEAT_LEG=1 for its later legs; run a leg by itself and they run there too.
FIRST_LEG_ONLY = ("test_bench.py", "test_toy_model.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VP2P_REPEAT_LEG") != "1":
        return
    keep = [i for i in items if os.path.basename(str(i.fspath)) not in FIRST_LEG_ONLY]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config._vp2p_first_leg_only = len(dropped)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_vp2p_first_leg_only", 0)
    if n:
        terminalreporter.write_line(f"[vp2p] {n} tests of {', '.join(FIRST_LEG_ONLY)} ran on the first ComfyUI "
                                    "leg only (version-independent); deselected on this one")
