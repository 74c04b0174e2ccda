"""Registry-ready: `comfy node validate` (PyPI comfy-cli) passes without warnings, pyproject.toml
has what the registry reads, and the archive `comfy node publish` would upload (git-tracked files
minus .comfyignore, packed by comfy-cli's own code) holds the runtime and nothing that starts
processes, opens network connections, evaluates code or calls pip."""
import ast
import os
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest

from vp2p_dev.devkit import REPO

# client networking and process control; aiohttp's `web` (ComfyUI's own server routes) is allowed
BANNED_MODULES = {"subprocess", "socket", "socketserver", "urllib", "http", "requests", "httpx", "ftplib",
                  "smtplib", "telnetlib", "pip", "multiprocessing", "pty", "webbrowser", "xmlrpc"}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
BANNED_OS = re.compile(r"^(system|popen|exec\w*|spawn\w*|fork\w*|startfile|posix_spawn\w*)$")
BANNED_TEXT = re.compile(r"pip\s+install|pip\.main|ensurepip|ClientSession|create_subprocess|new Function\(|"
                         r"\beval\(|child_process|XMLHttpRequest")


def comfy_cli():
    try:
        import comfy_cli.file_utils  # noqa: F401
    except ImportError:
        pytest.skip("comfy-cli is not installed (scripts/setup_host.sh installs it)")
    return os.path.join(os.path.dirname(sys.executable), "comfy")


def python_findings(source, name):
    found = []
    tree = ast.parse(source, name)
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            found += [f"import {a.name}" for a in n.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(n, ast.ImportFrom) and n.module:
            root = n.module.split(".")[0]
            if root in BANNED_MODULES or (root == "aiohttp" and any(a.name != "web" for a in n.names)):
                found.append(f"from {n.module} import ...")
        elif isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Name) and f.id in BANNED_CALLS:
                found.append(f"{f.id}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "os" \
                    and BANNED_OS.match(f.attr):
                found.append(f"os.{f.attr}()")
    return [f"{name}:{x}" for x in found]


def findings(files):
    """{path: [what]} for shipped files that would run processes, network, eval/exec or pip."""
    out = []
    for name, data in files.items():
        if name.endswith((".sh", ".bat", ".ps1", ".exe")):
            out.append(f"{name}: a script")
            continue
        if not name.endswith((".py", ".js", ".mjs", ".ts", ".toml", ".txt", ".cfg", ".ini", ".json")):
            continue
        text = data.decode("utf-8", "replace")
        if name.endswith(".py"):
            out += python_findings(text, name)
        out += [f"{name}:{m.group(0)}" for m in BANNED_TEXT.finditer(text) if not name.endswith(".json")]
    return out


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """{path: bytes} of the archive comfy-cli builds for `comfy node publish`."""
    comfy_cli()
    zpath = tmp_path_factory.mktemp("pack") / "node.zip"
    code = "import sys; from comfy_cli.file_utils import zip_files; zip_files(sys.argv[1])"
    res = subprocess.run([sys.executable, "-c", code, str(zpath)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    with zipfile.ZipFile(zpath) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_comfy_node_validate_passes(tmp_path):
    exe = comfy_cli()
    env = dict(os.environ, HOME=str(tmp_path))        # comfy-cli keeps its settings under HOME
    res = subprocess.run([exe, "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=REPO, env=env,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "All validation checks passed" in out and "Warning" not in out and "Security warnings" not in out, out


def test_pyproject_has_what_the_registry_reads():
    comfy_cli()
    from comfy_cli.registry.config_parser import extract_node_configuration
    cfg = extract_node_configuration(os.path.join(REPO, "pyproject.toml"))
    assert cfg is not None
    assert cfg.project.supported_comfyui_version == ">=0.3.52"
    assert cfg.project.supported_os == ["OS Independent"]
    assert cfg.project.license.file == "LICENSE" and os.path.isfile(os.path.join(REPO, "LICENSE"))
    repo = cfg.project.urls.repository
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo), repo
    # the Icon is the repository's own file, as the registry fetches it (raw URL on the main branch)
    owner_name = repo.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_name}/main/"
    assert cfg.tool_comfy.icon.startswith(prefix), cfg.tool_comfy.icon
    icon = os.path.join(REPO, cfg.tool_comfy.icon.removeprefix(prefix))
    from PIL import Image
    with Image.open(icon) as im:
        assert im.format == "PNG" and im.size[0] == im.size[1] <= 400
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    with open(os.path.join(REPO, "requirements.txt")) as f:
        reqs = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    assert deps == reqs                                # one list of dependencies for pip and the registry


def test_the_archive_holds_the_runtime_and_nothing_else(shipped):
    names = set(shipped)
    for need in ("__init__.py", "nodes/video.py", "vp2p_host/compat.py", "vp2p_core/attention.py",
                 "web/vp2p.js", "web/docs/VP2PLoadVideo.md", "workflows/toy_word_swap.json", "subgraphs/Video-P2P Edit.json",
                 "models/toy_world/toy_world_sd1.safetensors", "requirements.txt", "pyproject.toml", "LICENSE"):
        assert need in names, need
    for folder in ("tests/", "bench/", "scripts/", "vp2p_dev/", "docs/", ".ci/"):
        assert not any(n.startswith(folder) for n in names), folder


def test_the_archive_has_no_process_network_eval_or_pip_calls(shipped):
    assert findings(shipped) == []


def test_the_scan_finds_what_it_looks_for():
    """The same scan flags the development files that .comfyignore keeps out of the archive."""
    def read(p):
        with open(os.path.join(REPO, p), "rb") as f:
            return f.read()
    got = findings({p: read(p) for p in ("vp2p_dev/comfy_host.py", "scripts/setup_host.sh", "tests/host/test_registry.py")})
    assert "vp2p_dev/comfy_host.py:import subprocess" in got and "vp2p_dev/comfy_host.py:import socket" in got
    assert "scripts/setup_host.sh: a script" in got and "tests/host/test_registry.py:import subprocess" in got
    planted = b"import os\nfrom urllib.request import urlopen\nos.system('x')\nexec('1')\nx = 'pip install y'\n"
    assert sorted(findings({"nodes/x.py": planted})) == sorted([
        "nodes/x.py:from urllib.request import ...", "nodes/x.py:os.system()", "nodes/x.py:exec()",
        "nodes/x.py:pip install"])
