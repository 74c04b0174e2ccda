"""The node reference, generated from the V3 schemas of the live node classes in a booted ComfyUI
(so the documented inputs, defaults and explanations are exactly what the editor shows). One source, two outputs:
the editor's node help pages web/docs/<NodeId>.md (ComfyUI's help panel reads a pack's
WEB_DIRECTORY/docs/<NodeId>.md) and their index docs/nodes.md. The README's node table is written by hand but
checked here: every link to a help page must carry that node's live display name.

    python scripts/node_table.py            print the index
    python scripts/node_table.py --write    rewrite docs/nodes.md and web/docs/*.md
    python scripts/node_table.py --check    exit 1 if either is out of date or a README link is wrong
"""
import argparse
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS_DIR = os.path.join(REPO, "web", "docs")
INDEX = os.path.join(REPO, "docs", "nodes.md")
INTRO = ("Every node of the pack, in the registry's order, with a link to its help page (`web/docs/<NodeId>.md`, "
         "the page the editor's node library and info button open: every input with its type, default and "
         "when to change it, every output). Generated from the nodes' own schemas and tooltips by "
         "`scripts/node_table.py`; back to the [README](../README.md).\n")
# [Display Name](web/docs/NodeId.md) in the README (or ../web/docs/ from docs/)
_HELP_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)?web/docs/(\w+)\.md\)")
SOCKETS = ("MODEL", "CLIP", "VAE", "LATENT", "IMAGE", "AUDIO", "VIDEO", "CONDITIONING", "MASK")
UPLOADS = ("video_upload", "image_upload", "audio_upload")
EXPERIMENTAL = ("Experimental (research-grade: it may change between versions; the editor shows a BETA "
                "badge).")
_PLACEHOLDER = re.compile(r"^\(.*\)$")
_FILE = re.compile(r"\.[A-Za-z0-9]{2,12}$")


def _is_file_list(inp):
    """A combo filled from a folder (its options depend on the machine): documented as such."""
    if getattr(inp, "upload", None) is not None and inp.upload.value in UPLOADS:
        return True
    names = [str(c) for c in inp.options]
    return bool(names) and all(_PLACEHOLDER.match(n) or _FILE.search(n) for n in names)


def _input_row(inp):
    options = getattr(inp, "options", None) if inp.io_type == "COMBO" else None
    default = getattr(inp, "default", None)
    if options is not None:
        if _is_file_list(inp):
            kind, default = "file", ""
        else:
            kind = " / ".join(str(c) for c in options[:6]) + (" …" if len(options) > 6 else "")
            default = default if default is not None else (options[0] if options else "")
    else:
        kind = inp.io_type
        default = "" if kind in SOCKETS or default is None else default
    tip = (inp.tooltip or "").replace("\n", " ").replace("|", "\\|")
    opt = " (optional)" if inp.optional else ""
    return f"| `{inp.id}`{opt} | {kind} | {default} | {tip} |"


def node_markdown(cls, page=False):
    """Markdown of one node, read from its V3 schema: a subsection, or (page=True) its help page."""
    schema = cls.GET_SCHEMA()
    lines = [f"{'#' if page else '###'} {schema.display_name}", ""]
    desc = schema.description or (cls.__doc__ or "").strip().split("\n")[0]
    if desc:
        lines += [desc, ""]
    if schema.is_experimental:
        lines += [EXPERIMENTAL, ""]
    if page:
        lines += [f"Node id `{schema.node_id}`, category `{schema.category}`. "
                  "Pack: ComfyUI Video-P2P (text-driven video editing, Liu et al., CVPR 2024).", "",
                  "## Inputs", ""]
    lines += ["| input | type | default | what it does / when to change it |", "|---|---|---|---|"]
    inputs = schema.inputs or []
    lines += [_input_row(i) for i in inputs if not i.optional] + [_input_row(i) for i in inputs if i.optional]
    outs = [(o.display_name or o.io_type, o.io_type, o.tooltip or "") for o in schema.outputs or []]
    if page:
        lines += ["", "## Outputs", ""]
        if outs:
            lines += ["| output | type | what it is |", "|---|---|---|"]
            lines += [f"| `{n}` | {t} | {tip} |" for n, t, tip in outs]
        else:
            lines.append("None (it writes files and shows them in the editor).")
        lines.append("")
    else:
        lines += ["", "Outputs: " + ", ".join(f"`{n}` ({t})" for n, t, _ in outs), ""]
    return "\n".join(lines)


def pack_nodes():
    """[(node id, class)] of the pack as ComfyUI loaded it, in the registry's order."""
    from . import comfy_host
    from . import devkit as tl
    comfy_host.boot(threads=1)
    return [(cls.GET_SCHEMA().node_id, cls) for cls in tl.pack_nodes.NODES]


def index_page(nodes):
    """docs/nodes.md: one row per node, linking its help page."""
    rows = ["# Node reference", "", INTRO, "| node | id | what it does |", "|---|---|---|"]
    for n, cls in nodes:
        schema = cls.GET_SCHEMA()
        desc = (schema.description or (cls.__doc__ or "").strip().split("\n")[0]).replace("|", "\\|")
        beta = " (experimental)" if schema.is_experimental else ""
        rows.append(f"| [{schema.display_name}](../web/docs/{n}.md) | `{n}` | {desc}{beta} |")
    return "\n".join(rows) + "\n"


def readme_link_errors(nodes, text):
    """README links to help pages whose text is not that node's live display name (or whose node is gone)."""
    names = {n: cls.GET_SCHEMA().display_name for n, cls in nodes}
    return [f"[{label}](web/docs/{n}.md)" for label, n in _HELP_LINK.findall(text) if names.get(n) != label]


def doc_pages(nodes):
    """{file name: markdown} of web/docs."""
    return {f"{n}.md": node_markdown(cls, page=True) for n, cls in nodes}


def stale(nodes):
    """Names of the generated files that differ from what the node definitions give."""
    out = []
    if not os.path.exists(INDEX) or open(INDEX, encoding="utf-8").read() != index_page(nodes):
        out.append("docs/nodes.md")
    with open(README, encoding="utf-8") as f:
        wrong = readme_link_errors(nodes, f.read())
    if wrong:
        out.append("README.md (node links not matching the live display names: " + ", ".join(wrong) + ")")
    pages = doc_pages(nodes)
    for name, body in pages.items():
        p = os.path.join(DOCS_DIR, name)
        if not os.path.exists(p) or open(p, encoding="utf-8").read() != body:
            out.append(f"web/docs/{name}")
    extra = sorted(set(os.listdir(DOCS_DIR)) - set(pages)) if os.path.isdir(DOCS_DIR) else []
    out += [f"web/docs/{n} (no such node)" for n in extra if n.endswith(".md")]
    return out


def write(nodes):
    with open(INDEX, "w", encoding="utf-8") as f:
        f.write(index_page(nodes))
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
    ap.add_argument("--write", action="store_true", help="rewrite docs/nodes.md and web/docs/*.md")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if docs/nodes.md or a help page is stale, or a README node link is wrong")
    a = ap.parse_args()
    nodes = pack_nodes()
    if a.write:
        write(nodes)
        print(f"wrote docs/nodes.md and {len(nodes)} pages in web/docs/")
    elif a.check:
        bad = stale(nodes)
        print("up to date" if not bad else "stale (run scripts/node_table.py --write): " + ", ".join(bad))
        sys.exit(1 if bad else 0)
    else:
        print(index_page(nodes))


if __name__ == "__main__":
    main()
