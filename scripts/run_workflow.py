"""Run a workflow file headlessly through ComfyUI's real executor (this pack loaded as a custom
node), with overrides, progress, and the paths of what it wrote.

    python scripts/run_workflow.py workflows/toy_word_swap.json \\
        --set "P2P Controller.target_text=a blue circle on a striped gray background" \\
        --set VP2PTuneOnVideo.steps=50 --output-dir output

--set KEY.INPUT=VALUE, KEY = a node id, a node title, or a node type (display or class name)
when only one node has it; VALUE is parsed as JSON when it can be (numbers, true/false).
Accepts UI-format (editor) and API-format JSON."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(prompt: dict, sets: list[str], display_names: dict) -> list[str]:
    done = []
    for item in sets:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SystemExit(f"--set expects KEY.INPUT=VALUE, got {item!r}")
        lhs, value = item.split("=", 1)
        key, name = lhs.rsplit(".", 1)
        if key in prompt:
            ids = [key]
        else:
            ids = [i for i, n in prompt.items() if n.get("_meta", {}).get("title") == key]
            if not ids:
                ids = [i for i, n in prompt.items()
                       if key in (n["class_type"], display_names.get(n["class_type"]))]
        if len(ids) != 1:
            raise SystemExit(f"--set {item!r}: {'no' if not ids else len(ids)} nodes match {key!r}; "
                             f"use a node id ({', '.join(sorted(prompt, key=int))}) or a unique title")
        node = prompt[ids[0]]
        if isinstance(node["inputs"].get(name), list):
            raise SystemExit(f"--set {item!r}: input {name!r} of node {ids[0]} is a link, not a value")
        node["inputs"][name] = parse_value(value)
        done.append(f"{ids[0]}.{name}")
    return done


def boot_quiet(threads: int = 0):
    """Boot ComfyUI (CPU) with the pack, keeping its start-up chatter (optional extras it cannot
    import) out of the way unless the boot fails."""
    import contextlib
    import io
    import comfy_host
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return comfy_host.boot(threads=threads or None)
    except Exception:
        print(log.getvalue(), file=sys.stderr)
        raise


def node_names(prompt: dict, display_names: dict) -> dict:
    """node id -> what the user calls it (its title, else the node's display name)."""
    return {i: n.get("_meta", {}).get("title") or display_names.get(n["class_type"], n["class_type"])
            for i, n in prompt.items()}


@contextlib.contextmanager
def watch(on_node, on_progress):
    """Report execution while a prompt runs: on_node(node_id) when ComfyUI starts a node,
    on_progress(value, total) for its ProgressBar updates (both hooks restored afterwards)."""
    import comfy.utils
    import comfy_host
    server = comfy_host.boot()["server"]
    send = server.send_sync

    def on_message(event, data, sid=None):
        if event == "executing" and data.get("node") is not None:
            on_node(data["node"])
        return send(event, data, sid)

    server.send_sync = on_message
    comfy.utils.set_progress_bar_global_hook(lambda value, total, *a, **k: on_progress(value, total))
    try:
        yield
    finally:
        server.send_sync = send
        comfy.utils.set_progress_bar_global_hook(None)


def written_files(prompt: dict, result: dict, out_dir: str) -> list[str]:
    """Paths of the files a finished prompt reported writing (saved images/videos, VP2P saves)."""
    written = []
    for nid, ui in (result.get("_ui") or {}).items():
        for item in (ui.get("images") or []) + (ui.get("gifs") or []):
            if item.get("type") == "output":
                written.append(os.path.join(out_dir, item.get("subfolder", ""), item["filename"]))
        for r in result.get(nid, ()) if isinstance(result.get(nid), tuple) else ():
            if isinstance(r, str) and os.path.isfile(r):
                written.append(r)
    for nid, vals in result.items():
        if nid != "_ui" and prompt.get(nid, {}).get("class_type") == "VP2PSaveVideo":
            written.append(vals[0])
    return sorted(set(written))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workflow")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.INPUT=VALUE")
    ap.add_argument("--output-dir", default=None, help="ComfyUI output folder (default: ComfyUI's own)")
    ap.add_argument("--input-dir", default=None, help="ComfyUI input folder")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    a = ap.parse_args(argv)
    a.workflow = os.path.abspath(a.workflow)
    a.output_dir = a.output_dir and os.path.abspath(a.output_dir)
    a.input_dir = a.input_dir and os.path.abspath(a.input_dir)
    import comfy_host
    print("starting ComfyUI (CPU)...", flush=True)
    boot_quiet(a.threads)
    import folder_paths
    import nodes
    import workflow_api
    if a.output_dir:
        os.makedirs(a.output_dir, exist_ok=True)
        folder_paths.set_output_directory(os.path.abspath(a.output_dir))
    if a.input_dir:
        folder_paths.set_input_directory(os.path.abspath(a.input_dir))
    try:
        prompt = workflow_api.load_workflow(a.workflow, nodes.NODE_CLASS_MAPPINGS)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    apply_overrides(prompt, a.set, nodes.NODE_DISPLAY_NAME_MAPPINGS)
    names = node_names(prompt, nodes.NODE_DISPLAY_NAME_MAPPINGS)
    state = {"node": None, "t": time.time(), "last": 0.0}

    def on_node(node):
        state["node"] = node
        print(f"[{time.time() - state['t']:7.1f}s] {names.get(node, node)}", flush=True)

    def on_progress(value, total):
        now = time.time()
        if value == total or now - state["last"] > 2:
            state["last"] = now
            print(f"           {names.get(state['node'], '')}: {value}/{total}", flush=True)

    try:
        with watch(on_node, on_progress):
            result = comfy_host.run_prompt(prompt, client_id="run_workflow")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done in {time.time() - state['t']:.1f}s; wrote:")
    cwd = os.getcwd()
    for p in written_files(prompt, result, folder_paths.get_output_directory()):
        print("  " + (os.path.relpath(p) if os.path.abspath(p).startswith(cwd + os.sep) else p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
