"""Boot a real ComfyUI in this process (CPU) with this pack loaded as a custom node folder.

Shared by the test-suite, the benchmarks and the headless workflow runner, so all three
exercise exactly what a user's ComfyUI runs: ComfyUI's own custom-node loader, its
validator and its PromptExecutor.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_ROOT = os.path.join(REPO, ".host")
DEFAULT_LEG = "0.3.75"
PACK_DIRNAME = "comfyui-video-p2p"
PACK_NODES = (
    "VP2PInflateT2SModel",
    "VP2PTuneOnVideo",
    "VP2PSharedNullTextInvert",
    "VP2PController",
    "VP2PDecoupledSampler",
)

_state: dict = {}


def leg() -> str:
    """Which ComfyUI the harness runs: VP2P_COMFYUI (0.3.75 default, 0.3.52) or 'custom'."""
    return "custom" if os.environ.get("COMFYUI_PATH") else os.environ.get("VP2P_COMFYUI", DEFAULT_LEG)


def host_dir() -> str:
    return os.path.join(HOST_ROOT, leg())


def comfy_root() -> str:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return os.path.abspath(env)
    marker = os.path.join(host_dir(), "comfyui_path")
    if not os.path.exists(marker):
        raise RuntimeError(f"No ComfyUI host {leg()}: run `VP2P_COMFYUI={leg()} bash scripts/setup_host.sh` "
                           "first (or set COMFYUI_PATH).")
    with open(marker) as f:
        return f.read().strip()


def overlay_site() -> str | None:
    """The leg's own frontend/templates/docs packages (set up by setup_host.sh), if any."""
    site = os.path.join(host_dir(), "site")
    return site if os.path.isdir(site) else None


def find_pack():
    """The pack's package as ComfyUI loaded it (ComfyUI >= 0.3.3x names it by its full path)."""
    init = os.path.realpath(os.path.join(REPO, "__init__.py"))
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and os.path.realpath(f) == init:
            return mod
    return None


def boot(threads: int | None = None):
    """Import ComfyUI on CPU the way main.py does, create its PromptServer (unserved) and
    load the built-in extra nodes and custom nodes with ComfyUI's own loader."""
    if _state:
        return _state
    root = comfy_root()
    if threads:
        import torch
        torch.set_num_threads(threads)
    site = overlay_site()
    if site:
        sys.path.insert(0, site)
    sys.path.insert(0, root)
    os.chdir(root)
    import comfy.options  # noqa: F401
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import folder_paths  # noqa: F401
    import utils.extra_config  # noqa: F401  (main.py's order: ComfyUI's utils/ before comfy.utils)
    import comfy.model_management  # noqa: F401  (must come after args.cpu)
    import execution
    import server
    import nodes

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    prompt_server = server.PromptServer(loop)
    link = os.path.join(root, "custom_nodes", PACK_DIRNAME)
    if os.path.islink(link) and os.path.realpath(link) != os.path.realpath(REPO):
        os.unlink(link)                   # another checkout of the pack was linked: this one runs
    if not os.path.exists(link):
        os.symlink(REPO, link)
    init = nodes.init_extra_nodes
    kw = {"init_api_nodes": False} if "init_api_nodes" in inspect.signature(init).parameters else {}
    res = init(init_custom_nodes=True, **kw)
    if inspect.iscoroutine(res):
        loop.run_until_complete(res)
    pack = find_pack()
    if pack is None:
        raise RuntimeError(f"ComfyUI failed to import the pack '{PACK_DIRNAME}' (see the log above)")
    missing = [n for n in PACK_NODES if n not in nodes.NODE_CLASS_MAPPINGS]
    _state.update(root=root, server=prompt_server, loop=loop, execution=execution, nodes=nodes,
                  pack=pack, missing_nodes=missing)
    return _state


def pack_module(name: str):
    """A submodule of the pack as ComfyUI loaded it (one copy only: isinstance checks hold)."""
    import importlib
    return importlib.import_module(f"{boot()['pack'].__name__}.{name}")


class PromptFailed(RuntimeError):
    """A prompt ComfyUI rejected (`node_errors`: its validation errors by node id) or whose
    execution failed (`exception_message`: what the editor shows for the failing node)."""

    def __init__(self, text, node_errors=None, exception_message=None):
        super().__init__(text)
        self.node_errors, self.exception_message = node_errors or {}, exception_message

    def messages(self) -> list[str]:
        """What the user reads: each validation error's details, or the execution error."""
        if self.exception_message is not None:
            return [self.exception_message]
        return [e.get("details") or e.get("message", "") for ne in self.node_errors.values()
                for e in ne.get("errors", [])]


def new_executor():
    """A PromptExecutor with ComfyUI's classic cache: kept across prompts, it re-runs only the
    nodes whose inputs changed, as the server's own executor does."""
    st = boot()
    execution = st["execution"]
    if "cache_args" in inspect.signature(execution.PromptExecutor).parameters:  # ComfyUI >= 0.3.6x
        return execution.PromptExecutor(st["server"], cache_args={"lru": 0, "ram": 0})
    return execution.PromptExecutor(st["server"])


def run_prompt(prompt: dict, outputs: list[str] | None = None, client_id: str | None = None,
               after_validation=None, executor=None) -> dict:
    """Validate and execute an API-format prompt with ComfyUI's PromptExecutor (a fresh one, or
    `executor` from new_executor() to keep its cache of unchanged nodes between prompts).

    Returns {node_id: tuple of outputs} for every executed node (batch lists unwrapped) and,
    under "_ui", the UI outputs ComfyUI would put in the history.
    Raises PromptFailed (a RuntimeError) carrying ComfyUI's own error text on failure.
    `after_validation()` runs between validation and execution (what changes while a prompt
    waits in the queue).
    """
    st = boot()
    execution = st["execution"]
    loop = st["loop"]
    prompt_id = str(uuid.uuid4())
    valid = loop.run_until_complete(execution.validate_prompt(prompt_id, prompt, None))
    if not valid[0]:
        raise PromptFailed(f"prompt rejected by ComfyUI: {valid[1]} {valid[3]}", node_errors=valid[3])
    if after_validation is not None:
        after_validation()
    executor = executor or new_executor()
    execute_outputs = valid[2] if outputs is None else outputs
    loop.run_until_complete(executor.execute_async(prompt, prompt_id, {"client_id": client_id}, execute_outputs))
    if not executor.success:
        msgs = [m for m in executor.status_messages if m[0] in ("execution_error", "execution_interrupted")]
        detail = msgs[-1][1] if msgs else executor.status_messages
        message = None
        if isinstance(detail, dict):
            message = detail.get("exception_message")
            detail = f"{detail.get('node_type')}: {detail.get('exception_message', 'interrupted')}\n" + \
                "".join(detail.get("traceback", []))
        raise PromptFailed(f"ComfyUI execution failed: {detail}", exception_message=message)
    result = {}
    for nid in prompt:
        cached = executor.caches.outputs.get(nid)
        if inspect.iscoroutine(cached):
            cached = loop.run_until_complete(cached)
        if cached is not None:
            vals = getattr(cached, "outputs", cached)  # a CacheEntry since 0.3.6x, the list before
            result[nid] = tuple(o[0] if len(o) == 1 else o for o in vals)
    result["_ui"] = executor.history_result["outputs"]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """The real ComfyUI HTTP server (main.py --cpu) on 127.0.0.1 at a free port."""

    def __init__(self, extra_model_paths: str | None = None, log_path: str | None = None,
                 extra_args: list[str] | None = None, root: str | None = None):
        self.extra_args = list(extra_args or [])
        self.root = root or comfy_root()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra_model_paths
        self.log_path = log_path
        self.proc = None

    def __enter__(self):
        import urllib.request
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in (overlay_site(), env.get("PYTHONPATH")) if p])
        import torch
        # same intra-op thread count as this process: CPU float reductions depend on it
        env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--dont-print-server"]
        if self.extra:
            cmd += ["--extra-model-paths-config", self.extra]
        cmd += self.extra_args
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        # VP2P_SERVER_START_S: more time for the start-up on a loaded machine
        deadline = time.time() + float(os.environ.get("VP2P_SERVER_START_S", 120))
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                urllib.request.urlopen(self.url + "/object_info/KSampler", timeout=2).read()
                return self
            except Exception:
                time.sleep(0.3)
        raise RuntimeError(f"ComfyUI server did not come up in {os.environ.get('VP2P_SERVER_START_S', 120)} s")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()

    def get_json(self, path: str):
        import json
        import urllib.request
        return json.loads(urllib.request.urlopen(self.url + path, timeout=30).read())

    def post(self, path: str, payload) -> bytes:
        import json
        import urllib.request
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=30).read()

    def post_json(self, path: str, payload):
        import json
        return json.loads(self.post(path, payload))

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        """POST /prompt, poll /history; returns the history entry (raises on error)."""
        pid = self.post_json("/prompt", {"prompt": prompt, "client_id": "vp2p-tests"})["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get_json(f"/history/{pid}")
            if pid in hist:
                entry = hist[pid]
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise RuntimeError(f"server run failed: {status.get('messages')}")
                return entry
            time.sleep(0.25)
        raise TimeoutError("prompt did not finish")
