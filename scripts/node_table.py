"""The node reference, generated from the live node classes in a booted ComfyUI (so the documented
inputs, defaults and explanations are exactly what the editor shows). One source, two outputs:
the README's "Node reference" section and the editor's node help pages web/docs/<NodeId>.md
(ComfyUI's help panel reads a pack's WEB_DIRECTORY/docs/<NodeId>.md).

    python scripts/node_table.py            print the README section
    python scripts/node_table.py --write    rewrite the README section and web/docs/*.md
    python scripts/node_table.py --check    exit 1 if either is out of date
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS_DIR = os.path.join(REPO, "web", "docs")
SECTION_START = "## Node reference\n"
SECTION_END = "<!-- NODES -->"
INTRO = ("Generated from the nodes' own tooltips by `scripts/node_table.py`, which also writes the editor's "
         "help page of every node (`web/docs/<NodeId>.md`).\n")
ORDER = ["VP2PInflateT2SModel", "VP2PTuneOnVideo", "VP2PLoadTuning", "VP2PSharedNullTextInvert",
         "VP2PSaveInversion", "VP2PLoadInversion", "VP2PController", "VP2PDecoupledSampler", "VP2PLoadVideo",
         "VP2PSaveVideo", "VP2PSideBySide", "VP2PLoadSmallCheckpoint", "VP2PToyWorldVideo", "VP2PToyWorldOracle"]
SOCKETS = ("MODEL", "CLIP", "VAE", "LATENT", "IMAGE", "AUDIO", "VIDEO", "CONDITIONING", "MASK")
_PLACEHOLDER = re.compile(r"^\(.*\)$")
_FILE = re.compile(r"\.[A-Za-z0-9]{2,12}$")


def _opts(spec):
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _is_file_list(spec):
    """A combo filled from a folder (its options depend on the machine): documented as such."""
    opts = _opts(spec)
    if any(opts.get(k) for k in ("video_upload", "image_upload", "audio_upload")):
        return True
    names = [str(c) for c in spec[0]]
    return bool(names) and all(_PLACEHOLDER.match(n) or _FILE.search(n) for n in names)


def _input_row(name, spec, group):
    opts = _opts(spec)
    if isinstance(spec[0], list):
        if _is_file_list(spec):
            kind, default = "file", ""
        else:
            kind = " / ".join(str(c) for c in spec[0][:6]) + (" …" if len(spec[0]) > 6 else "")
            default = opts.get("default", spec[0][0] if spec[0] else "")
    else:
        kind = spec[0]
        default = "" if kind in SOCKETS else opts.get("default", "")
    tip = opts.get("tooltip", "").replace("\n", " ").replace("|", "\\|")
    opt = " (optional)" if group == "optional" else ""
    return f"| `{name}`{opt} | {kind} | {default} | {tip} |"


def node_markdown(class_name, cls, display, page=False):
    """Markdown of one node: a README subsection, or (page=True) its help page."""
    lines = [f"{'#' if page else '###'} {display}", ""]
    desc = getattr(cls, "DESCRIPTION", "") or (cls.__doc__ or "").strip().split("\n")[0]
    if desc:
        lines += [desc, ""]
    if page:
        lines += [f"Node id `{class_name}`, category `{getattr(cls, 'CATEGORY', '')}`. "
                  "Pack: ComfyUI Video-P2P (text-driven video editing, Liu et al., CVPR 2024).", "",
                  "## Inputs", ""]
    lines += ["| input | type | default | what it does / when to change it |", "|---|---|---|---|"]
    types = cls.INPUT_TYPES()
    for group in ("required", "optional"):
        for name, spec in types.get(group, {}).items():
            lines.append(_input_row(name, spec, group))
    outs = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    tips = getattr(cls, "OUTPUT_TOOLTIPS", None)
    if page:
        lines += ["", "## Outputs", ""]
        if cls.RETURN_TYPES:
            lines += ["| output | type | what it is |", "|---|---|---|"]
            lines += [f"| `{n}` | {t} | {(tips[i] if tips and i < len(tips) else '')} |"
                      for i, (n, t) in enumerate(zip(outs, cls.RETURN_TYPES))]
        else:
            lines.append("None (it writes files and shows them in the editor).")
        lines.append("")
    else:
        lines += ["", "Outputs: " + ", ".join(f"`{n}` ({t})" for n, t in zip(outs, cls.RETURN_TYPES)), ""]
    return "\n".join(lines)


def pack_nodes():
    """[(node id, class, display name)] of the pack as ComfyUI loaded it, in reference order."""
    import comfy_host
    import devkit as tl
    comfy_host.boot(threads=1)
    pack = tl.pack_nodes
    names = sorted(pack.NODE_CLASS_MAPPINGS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    return [(n, pack.NODE_CLASS_MAPPINGS[n], pack.NODE_DISPLAY_NAME_MAPPINGS.get(n, n)) for n in names]


def readme_section(nodes):
    return SECTION_START + "\n" + INTRO + "\n" + "\n".join(node_markdown(*n) for n in nodes) + "\n"


def doc_pages(nodes):
    """{file name: markdown} of web/docs."""
    return {f"{n}.md": node_markdown(n, cls, display, page=True) for n, cls, display in nodes}


def readme_with(text, section):
    a = text.index(SECTION_START)
    b = text.index(SECTION_END, a)
    return text[:a] + section + text[b:]


def stale(nodes):
    """Names of the generated files that differ from what the node definitions give."""
    out = []
    with open(README, encoding="utf-8") as f:
        text = f.read()
    if readme_with(text, readme_section(nodes)) != text:
        out.append("README.md (Node reference)")
    pages = doc_pages(nodes)
    for name, body in pages.items():
        p = os.path.join(DOCS_DIR, name)
        if not os.path.exists(p) or open(p, encoding="utf-8").read() != body:
            out.append(f"web/docs/{name}")
    extra = sorted(set(os.listdir(DOCS_DIR)) - set(pages)) if os.path.isdir(DOCS_DIR) else []
    out += [f"web/docs/{n} (no such node)" for n in extra if n.endswith(".md")]
    return out


def write(nodes):
    with open(README, encoding="utf-8") as f:
        text = f.read()
    with open(README, "w", encoding="utf-8") as f:
        f.write(readme_with(text, readme_section(nodes)))
    os.makedirs(DOCS_DIR, exist_ok=True)
    pages = doc_pages(nodes)
    for n in os.listdir(DOCS_DIR):
        if n.endswith(".md") and n not in pages:
            os.remove(os.path.join(DOCS_DIR, n))
    for name, body in pages.items():
        with open(os.path.join(DOCS_DIR, name), "w", encoding="utf-8") as f:
            f.write(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="rewrite the README section and web/docs/*.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README section or a help page is stale")
    a = ap.parse_args()
    nodes = pack_nodes()
    if a.write:
        write(nodes)
        print(f"wrote the README's node reference and {len(nodes)} pages in web/docs/")
    elif a.check:
        bad = stale(nodes)
        print("up to date" if not bad else "stale (run scripts/node_table.py --write): " + ", ".join(bad))
        sys.exit(1 if bad else 0)
    else:
        print(readme_section(nodes))


if __name__ == "__main__":
    main()
