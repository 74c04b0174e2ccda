"""The README stays short and every relative link in it and in docs/*.md (files, images, #anchors) resolves.

Anchors are computed as GitHub renders headings, so a renamed heading breaks the links that point at it."""
import glob
import os
import re
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README_LIMIT = 15360           # bytes: the README is the five-minute read; everything else lives in docs/

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _prose(text):
    """Markdown without code: links inside code blocks and spans are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading):
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # a link in a heading keeps its label
    text = re.sub(r"[`*_~]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text):
    """Every anchor a markdown file defines (duplicate headings get -1, -2, ... as on GitHub)."""
    seen, out = {}, set(_HTML_ID.findall(text))
    for h in _HEADING.findall(_FENCE.sub("", text)):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(path):
    """'target (why)' for every relative link of a markdown file that does not resolve."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    bad = []
    for target in _LINK.findall(_prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):        # http:, https:, mailto: ... not checked here
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), urllib.parse.unquote(file_part))) \
            if file_part else path
        if not os.path.exists(dest):
            bad.append(f"{target} (no such file)")
        elif anchor:
            if not dest.endswith(".md"):
                bad.append(f"{target} (anchor into a non-markdown file)")
            elif anchor not in anchors(open(dest, encoding="utf-8").read()):
                bad.append(f"{target} (no heading gives #{anchor})")
    return bad


def _doc_files():
    return [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def test_readme_is_at_most_15_kb():
    size = os.path.getsize(os.path.join(ROOT, "README.md"))
    assert size <= README_LIMIT, f"README.md is {size} bytes (limit {README_LIMIT}): move details to docs/"


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_the_readme_links_its_pictures_and_the_docs():
    """The README shows the demo output and the editor screenshot, and links the docs that hold the rest."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    targets = set(_LINK.findall(_prose(text)))
    assert {"docs/toy_demo_sbs.png", "docs/toy_workflow.png"} <= targets
    assert {"docs/benchmarks.md", "docs/design.md", "docs/testing.md", "docs/toy_world.md",
            "docs/nodes.md", "docs/install.md"} <= targets
    assert text.lstrip().startswith("# ") and "bash scripts/demo.sh" in text[:1500] and "bash scripts/test.sh" in text[:1500]


def test_the_checker_finds_broken_links(tmp_path):
    """A missing file, a missing image, a wrong anchor and a wrong anchor in another file are reported;
    links in code, external links and GitHub's slugs of punctuated and duplicate headings are not."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Quality on v3: claims, locality\n", encoding="utf-8")
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Edit presets (P2P Controller `preset`)\n\n## Notes\n\n## Notes\n\n"
        "[ok](other.md) [ok](other.md#quality-on-v3-claims-locality) [ok](#edit-presets-p2p-controller-preset) "
        "[ok](#notes-1) ![ok](pic.png) [ext](https://example.com/x.md) `[code](nothere.md)`\n\n"
        "```\n[fenced](nothere.md)\n```\n\n"
        "[bad](missing.md) ![bad](missing.png) [bad](#nowhere) [bad](other.md#nowhere) [bad](#notes-2)\n",
        encoding="utf-8")
    assert broken_links(str(page)) == [
        "missing.md (no such file)", "missing.png (no such file)", "#nowhere (no heading gives #nowhere)",
        "other.md#nowhere (no heading gives #nowhere)", "#notes-2 (no heading gives #notes-2)"]
