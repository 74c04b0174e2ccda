"""The node reference (README) and the editor's help pages (web/docs/<NodeId>.md) are generated
from the live node definitions by scripts/node_table.py, and are up to date."""
import os

import node_table


def test_readme_section_and_help_pages_are_up_to_date(host):
    nodes = node_table.pack_nodes()
    assert node_table.stale(nodes) == [], "run: .venv/bin/python scripts/node_table.py --write"
    ids = {n for n, _ in nodes}
    pages = {f[:-3] for f in os.listdir(node_table.DOCS_DIR) if f.endswith(".md")}
    assert pages == ids and len(ids) >= 15        # one help page per node of the pack, no orphans


def test_a_changed_definition_makes_them_stale(host, monkeypatch):
    """The check compares with what the definitions give now (so it cannot pass on old files)."""
    nodes = node_table.pack_nodes()
    cls = dict(nodes)["VP2PSideBySide"]
    define = cls.define_schema

    def changed(c):
        schema = define()
        schema.description = "changed"
        return schema
    monkeypatch.setattr(cls, "define_schema", classmethod(changed))
    bad = node_table.stale(nodes)
    assert "README.md (Node reference)" in bad and "web/docs/VP2PSideBySide.md" in bad and len(bad) == 2


def test_help_page_content(host):
    page = open(os.path.join(node_table.DOCS_DIR, "VP2PController.md"), encoding="utf-8").read()
    assert page.startswith("# P2P Controller\n") and "Node id `VP2PController`" in page
    assert "| `cross_replace` | FLOAT | 0.2 | Fraction of the first sampling steps" in page
    assert "| `controller` | VP2P_CONTROLLER |" in page
    assert "| `preset` (optional) | custom / " in page and "\nExperimental (research-grade" in page
    sbs = open(os.path.join(node_table.DOCS_DIR, "VP2PSideBySide.md"), encoding="utf-8").read()
    assert "Experimental" not in sbs and "| `IMAGE` | IMAGE | The videos side by side" in sbs
