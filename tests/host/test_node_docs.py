"""The editor's help pages (web/docs/<NodeId>.md) and their index (docs/nodes.md) are generated from the live
node definitions by scripts/node_table.py, and are up to date; the README's node links carry the live names."""
import os

import node_table


def test_index_and_help_pages_are_up_to_date(host):
    nodes = node_table.pack_nodes()
    assert node_table.stale(nodes) == [], "run: .venv/bin/python scripts/node_table.py --write"
    ids = {n for n, _ in nodes}
    pages = {f[:-3] for f in os.listdir(node_table.DOCS_DIR) if f.endswith(".md")}
    assert pages == ids and len(ids) >= 15        # one help page per node of the pack, no orphans
    readme = open(node_table.README, encoding="utf-8").read()
    method = ("VP2PInflateT2SModel", "VP2PTuneOnVideo", "VP2PSharedNullTextInvert", "VP2PController",
              "VP2PDecoupledSampler")
    linked = {n for _, n in node_table._HELP_LINK.findall(readme)}
    assert set(method) <= linked                  # the README's table links the five method nodes' pages
    index = open(node_table.INDEX, encoding="utf-8").read()
    assert all(f"(../web/docs/{n}.md)" in index for n in ids)


def _stale_with(monkeypatch, node_id, **changes):
    """node_table.stale() while one node's live schema has `changes`."""
    nodes = node_table.pack_nodes()
    cls = dict(nodes)[node_id]
    define = cls.define_schema

    def changed(c):
        schema = define()
        for k, v in changes.items():
            setattr(schema, k, v)
        return schema
    monkeypatch.setattr(cls, "define_schema", classmethod(changed))
    return node_table.stale(nodes)


def test_a_changed_definition_makes_them_stale(host, monkeypatch):
    """The check compares with what the definitions give now (so it cannot pass on old files)."""
    bad = _stale_with(monkeypatch, "VP2PSideBySide", description="changed")
    assert "docs/nodes.md" in bad and "web/docs/VP2PSideBySide.md" in bad and len(bad) == 2


def test_a_renamed_node_breaks_the_readme_link(host, monkeypatch):
    """The README's hand-written node table is checked against the live display names."""
    bad = _stale_with(monkeypatch, "VP2PController", display_name="P2P Controller (renamed)")
    assert any(b.startswith("README.md (node links") and "[P2P Controller](web/docs/VP2PController.md)" in b
               for b in bad), bad


def test_help_page_content(host):
    page = open(os.path.join(node_table.DOCS_DIR, "VP2PController.md"), encoding="utf-8").read()
    assert page.startswith("# P2P Controller\n") and "Node id `VP2PController`" in page
    assert "| `cross_replace` | FLOAT | 0.2 | Fraction of the first sampling steps" in page
    assert "| `controller` | VP2P_CONTROLLER |" in page
    assert "| `preset` (optional) | custom / " in page and "\nExperimental (research-grade" in page
    sbs = open(os.path.join(node_table.DOCS_DIR, "VP2PSideBySide.md"), encoding="utf-8").read()
    assert "Experimental" not in sbs and "| `IMAGE` | IMAGE | The videos side by side" in sbs


def test_method_nodes_state_their_peak_memory_from_the_memory_table(host):
    """Inflate, Tune, Invert and the Decoupled Sampler end their description (tooltip, help page) with
    their estimated peak at SD1.5 size, exactly as bench/results/memory.txt gives it."""
    from vp2p_dev import results_summary
    nodes = dict(node_table.pack_nodes())
    for node_id in ("VP2PInflateT2SModel",) + tuple(results_summary.NODE_STAGES):
        description = nodes[node_id].define_schema().description
        assert description.endswith(" " + results_summary.memory_note(node_id)), (node_id, description)
