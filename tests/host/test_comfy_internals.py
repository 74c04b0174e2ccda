"""Drift guard: every ComfyUI internal in docs/comfy_internals.md exists in the installed host
and still accepts the call the pack makes; every ComfyUI symbol the pack's source uses is in
that table."""
import ast
import importlib
import inspect
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE = os.path.join(REPO, "docs", "comfy_internals.md")
HOST_ROOTS = ("comfy", "folder_paths", "server", "execution", "comfy_api", "comfy_extras", "latent_preview",
              "node_helpers", "comfy_execution")
# the pack's own code (not tests, scripts or benchmarks, which are not shipped)
PACK_DIRS = ("nodes", "vp2p_core", "vp2p_toy", "vp2p_host")


def table_rows():
    rows = []
    for line in open(TABLE, encoding="utf-8"):
        m = re.match(r"\|\s*`([\w.]+)`\s*\|\s*`([^`]*)`\s*\|", line)
        if m:
            rows.append((m.group(1), m.group(2)))
    return rows


ROWS = table_rows()


def resolve(symbol):
    """(object, owner-is-a-class) for a dotted symbol: the longest importable module, then attributes."""
    parts = symbol.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        owner = None
        for name in parts[i:]:
            owner = obj
            obj = getattr(obj, name)        # AttributeError: the symbol is gone
        return obj, owner
    raise ImportError(symbol)


def parse_call(text):
    positional, keywords = [], []
    for item in filter(None, (t.strip() for t in text.strip("()").split(","))):
        (keywords if item.endswith("=") else positional).append(item.rstrip("="))
    return positional, keywords


def test_the_table_is_not_empty():
    assert len(ROWS) >= 30


@pytest.mark.parametrize("symbol,call", ROWS, ids=[r[0] for r in ROWS])
def test_internal_exists_and_binds(host, symbol, call):
    obj, owner = resolve(symbol)
    if call == "attr":
        return
    assert callable(obj), f"{symbol} is no longer callable"
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(obj) or (inspect.isclass(owner) and inspect.isfunction(obj)
                                and not isinstance(inspect.getattr_static(owner, symbol.rsplit(".", 1)[1]),
                                                   staticmethod)):
        params = params[1:]                    # self
    positional, keywords = parse_call(call)
    kinds = inspect.Parameter
    pos = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    if not any(p.kind == kinds.VAR_POSITIONAL for p in params):
        assert len(positional) <= len(pos), f"{symbol}{call}: takes {len(pos)} positional arguments now"
    names = {p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
    if not any(p.kind == kinds.VAR_KEYWORD for p in params):
        for k in keywords:
            assert k in names, f"{symbol}: no keyword '{k}' any more (has {sorted(names)})"
    for p in params[len(positional):]:
        if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) \
                and p.default is p.empty:
            assert p.name in keywords, f"{symbol}: new required argument '{p.name}'"


def host_references(path):
    """Dotted ComfyUI symbols a source file uses (through its import aliases)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    alias, refs = {}, set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.name.split(".")[0] in HOST_ROOTS:
                    alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module and n.module.split(".")[0] in HOST_ROOTS:
            for a in n.names:
                alias[a.asname or a.name] = f"{n.module}.{a.name}"
                refs.add(f"{n.module}.{a.name}")
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            chain, cur = [], n
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in alias:
                parts = [alias[cur.id]] + chain[::-1]
                dunder = [i for i, p in enumerate(parts) if p.startswith("__")]
                refs.add(".".join(parts[:dunder[0]] if dunder else parts))
    return refs


def test_every_host_symbol_of_the_pack_is_in_the_table(host):
    listed = {s for s, _ in ROWS}
    missing = {}
    for d in PACK_DIRS:
        folder = os.path.join(REPO, d)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if not f.endswith(".py"):
                continue
            for ref in host_references(os.path.join(folder, f)):
                obj = resolve(ref)[0]
                if inspect.ismodule(obj):
                    continue
                parts = ref.split(".")
                covered = any(".".join(parts[:i]) in listed for i in range(1, len(parts) + 1)) or \
                    any(sym.startswith(ref + ".") for sym in listed)       # a step on the way to one
                if not covered:
                    missing.setdefault(ref, []).append(f"{d}/{f}")
    assert not missing, f"add these to docs/comfy_internals.md: {missing}"
