"""Write the example workflows in ComfyUI's UI (drag-and-drop) format from compact graph
descriptions, taking widget order and defaults from the live node classes so the files always
match the nodes. Run after changing a node's inputs:

    .venv/bin/python -m vp2p_dev.make_workflows        # rewrites workflows/*.json and subgraphs/*.json
"""
from __future__ import annotations

import json
import os
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LINK_TYPES_SKIP = ("*",)
NOTE_W, COL_W = 360, 400
# The layout an artist reads left to right: one labelled group per stage, its nodes in one column (or
# two). A spec's column is its node's stage; STAGE_OF places a node type at (stage, sub-column)
# whatever the spec says, so new specs get the same layout.
STAGES = (("1. Load: model, video, prompts", "#3f789e"), ("2. Tune the model on the video", "#8a6a3a"),
          ("3. Invert the video", "#6a4a8a"), ("4. Edit", "#3f8a5a"), ("5. Decode and save", "#5a5a5a"))
# the prompts sit beside the inputs: tuning and inversion read the controller's source prompt
STAGE_OF = {"VP2PController": (0, 1), "CLIPTextEncode": (0, 1)}
PITCH, GROUP_PAD, TITLE_H, GROUP_TITLE_H = 440, 20, 30, 44   # column pitch; LiteGraph node / group title heights


def _opts(spec):
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _options(spec):
    """A combo's options: the list itself (V1 definitions) or the dict's "options" (V3 "COMBO"); else None."""
    if isinstance(spec[0], list):
        return spec[0]
    return _opts(spec).get("options", []) if spec[0] == "COMBO" else None


def _is_widget(spec):
    return _options(spec) is not None or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN")


def _has_control(name, spec):
    return spec[0] == "INT" and (name in ("seed", "noise_seed") or bool(_opts(spec).get("control_after_generate")))


def _default(spec):
    opts, options = _opts(spec), _options(spec)
    if options is not None:
        return opts.get("default", options[0] if options else "")
    return opts.get("default", {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec[0]])


class Graph:
    """Nodes by stage (a column each, see STAGES); links by (node, output name or index)."""

    def __init__(self, classes):
        self.classes = classes
        self.nodes, self.links = [], []

    def add(self, class_type, col, title=None, widgets=None, height=None, **inputs):
        if class_type in ("Note", "MarkdownNote"):
            node = {"id": len(self.nodes) + 1, "type": "Note", "pos": [0, 0],
                    "size": [NOTE_W, height or 200], "flags": {}, "order": len(self.nodes), "mode": 0,
                    "properties": {"text": ""}, "widgets_values": [widgets], "_col": col}
            if title:
                node["title"] = title
            self.nodes.append(node)
            return node["id"]
        cls = self.classes[class_type]
        types = cls.INPUT_TYPES()
        widgets = dict(widgets or {})
        spec_all = {**types.get("required", {}), **types.get("optional", {})}
        unknown = set(widgets) - set(spec_all)
        if unknown:
            raise KeyError(f"{class_type} has no inputs {sorted(unknown)}")
        node_inputs, values = [], []
        for group in ("required", "optional"):
            for name, spec in types.get(group, {}).items():
                if _is_widget(spec):
                    values.append(widgets.get(name, _default(spec)))
                    if _has_control(name, spec):
                        values.append("fixed")
                    continue
                link = None
                if name in inputs:
                    src, slot = inputs.pop(name)
                    link = self._link(src, slot, len(node_inputs), spec[0])
                elif group == "required":
                    raise ValueError(f"{class_type}: required input {name} is not connected")
                node_inputs.append({"name": name, "type": spec[0], "link": link})
        if inputs:
            raise KeyError(f"{class_type} has no linkable inputs {sorted(inputs)}")
        outs = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        multiline = sum(1 for g_ in ("required", "optional") for n_, sp in types.get(g_, {}).items()
                        if len(sp) > 1 and isinstance(sp[1], dict) and sp[1].get("multiline"))
        h = height or 40 + 24 * max(len(node_inputs), len(outs)) + 26 * len(values) + 60 * multiline
        if class_type == "VP2PController":
            h += 100                    # the alignment preview
        node = {"id": len(self.nodes) + 1, "type": class_type, "pos": [0, 0], "size": [COL_W - 40, h],
                "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": node_inputs,
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                            for i, (n, t) in enumerate(zip(outs, cls.RETURN_TYPES))],
                "properties": {"Node name for S&R": class_type}, "widgets_values": values, "_col": col}
        if title:
            node["title"] = title
        self.nodes.append(node)
        # links were created before the node existed: fix their target ids
        for ln in self.links:
            if ln[3] is None:
                ln[3] = node["id"]
        return node["id"]

    def _link(self, src, slot, target_slot, typ):
        node = self.nodes[src - 1]
        if isinstance(slot, str):
            names = [o["name"] for o in node["outputs"]]
            slot = names.index(slot)
        out = node["outputs"][slot]
        if out["type"] != typ and typ not in LINK_TYPES_SKIP:
            raise TypeError(f"cannot link {node['type']}.{out['name']} ({out['type']}) to an input of type {typ}")
        lid = len(self.links) + 1
        out["links"].append(lid)
        self.links.append([lid, src, slot, None, target_slot, typ])
        return lid

    def _stages(self):
        """{node id: (stage, sub-column)}: the spec's column or STAGE_OF, then pulled left until no link runs
        backwards."""
        stage = {n["id"]: STAGE_OF.get(n["type"], (n["_col"], 0)) for n in self.nodes}
        changed = True
        while changed:
            changed = False
            for _, src, _, dst, _, _ in self.links:
                if stage[src] > stage[dst]:
                    stage[src], changed = stage[dst], True
        return stage

    def _order(self, stage):
        """Nodes of each column top to bottom, ordered by the mean rank of their neighbours (barycentre
        sweeps, as layered graph drawing does), so wires cross less; a neighbour in the same column puts a
        node just below (its input) or above (its output). The last sweep follows the inputs. Notes stay on top."""
        cols = {s: [n["id"] for n in self.nodes if stage[n["id"]] == s] for s in sorted(set(stage.values()))}
        ups, downs = {n["id"]: [] for n in self.nodes}, {n["id"]: [] for n in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            ups[dst].append(src)
            downs[src].append(dst)
        topo = [n["id"] for n in self.nodes]       # a node links only to nodes added before it
        notes = {n["id"] for n in self.nodes if n["type"] == "Note"}
        key = {}

        def sweep(neighbours, columns, order, eps, before):
            for s in columns:
                rank = {i: (k + 0.5) / len(c) for c in cols.values() for k, i in enumerate(c)}
                for i in (j for j in order if stage[j] == s):
                    vals = [rank[j] if before(stage[j], s) else key[j] + eps
                            for j in neighbours[i] if stage[j] == s and j in key or before(stage[j], s)]
                    key[i] = -1.0 if i in notes else sum(vals) / len(vals) if vals else rank[i]
                    same = [key[j] + eps for j in neighbours[i] if stage[j] == s and j in key]
                    if same and i not in notes:         # below its inputs (above its outputs) in the column
                        key[i] = max(key[i], *same) if eps > 0 else min(key[i], *same)
                cols[s] = sorted(cols[s], key=lambda i: key[i])
        for _ in range(2):
            sweep(downs, sorted(cols, reverse=True), topo[::-1], -1e-3, lambda a, b: a > b)
            key.clear()
            sweep(ups, sorted(cols), topo, 1e-3, lambda a, b: a < b)
            key.clear()
        return cols

    def _layout(self):
        """Positions by stage and order; a node sits level with its inputs where the column leaves room."""
        stage = self._stages()
        cols = self._order(stage)
        byid = {n["id"]: n for n in self.nodes}
        ups = {n["id"]: [] for n in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            ups[dst].append(src)
        x, last_stage = 40 - PITCH, None
        for s, ids in cols.items():
            x += PITCH if s[0] != last_stage else COL_W       # sub-columns of a stage sit closer
            last_stage, y = s[0], 40 + GROUP_TITLE_H + TITLE_H
            for i in ids:
                placed = [byid[j]["pos"][1] for j in ups[i] if stage[j] < s]
                want = sum(placed) / len(placed) if placed else y
                byid[i]["pos"] = [x, max(y, round(want))]
                y = byid[i]["pos"][1] + byid[i]["size"][1] + TITLE_H + GROUP_PAD
        groups = []
        for st in sorted({s[0] for s in cols}):
            ns = [byid[i] for s, ids in cols.items() if s[0] == st for i in ids]
            x0 = min(n["pos"][0] for n in ns) - GROUP_PAD
            x1 = max(n["pos"][0] + n["size"][0] for n in ns) + GROUP_PAD
            top = min(n["pos"][1] for n in ns) - TITLE_H - GROUP_TITLE_H
            bottom = max(n["pos"][1] + n["size"][1] for n in ns) + GROUP_PAD
            title, color = STAGES[min(st, len(STAGES) - 1)]
            groups.append({"id": len(groups) + 1, "title": title, "bounding": [x0, top, x1 - x0, bottom - top],
                           "color": color, "font_size": 24, "flags": {}})
        return groups

    def ui(self):
        groups = self._layout()
        nodes = [{k: v for k, v in n.items() if k != "_col"} for n in self.nodes]
        # opens on the first stages (the Note, the inputs, the prompts) at a zoom where the editor still
        # draws text and widgets (below ~0.6 it switches to its low-detail rendering)
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": nodes,
                "links": self.links, "groups": groups, "config": {},
                "extra": {"ds": {"scale": 0.7, "offset": [0, 0]}}, "version": 0.4}


def write(name, graph):
    path = os.path.join(REPO, "workflows", name)
    with open(path, "w") as f:
        json.dump(graph.ui(), f, indent=1)
        f.write("\n")
    return path


def _uuid(*parts):
    """Stable ids, so regenerating a blueprint changes nothing that did not change."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "comfyui-video-p2p/" + "/".join(map(str, parts))))


def _slot_name(text):
    return "_".join(str(text).lower().replace("-", " ").split())


INPUT_ORDER = ("MODEL", "CLIP", "VAE")


def subgraph_blueprint(graph, inside, shown, name, description):
    """A subgraph blueprint (the file format of the editor's "Publish subgraph"): the laid-out graph cut
    around the nodes `inside`. Links from the other nodes become the subgraph's inputs, links to them its
    outputs; `shown` [(node id, widget)] are promoted onto the subgraph node."""
    ui = graph.ui()
    byid = {n["id"]: n for n in ui["nodes"]}
    inside = set(inside)
    ins, outs, links = {}, {}, []              # (node, slot) -> slot record of the subgraph
    for lid, src, sslot, dst, dslot, typ in ui["links"]:
        if src in inside and dst in inside:
            links.append({"id": lid, "origin_id": src, "origin_slot": sslot, "target_id": dst, "target_slot": dslot,
                          "type": typ})
        elif dst in inside:
            n = byid[src]
            rec = ins.setdefault((src, sslot), {"id": _uuid(name, "in", src, sslot),
                                                "name": _slot_name(n["outputs"][sslot]["name"]), "type": typ,
                                                "linkIds": []})
            rec["linkIds"].append(lid)
            links.append({"id": lid, "origin_id": -10, "origin_slot": (src, sslot), "target_id": dst,
                          "target_slot": dslot, "type": typ})
        elif src in inside:
            n = byid[src]
            label = n.get("title") if len(n["outputs"]) == 1 and n.get("title") else n["outputs"][sslot]["name"]
            rec = outs.setdefault((src, sslot), {"id": _uuid(name, "out", src, sslot), "name": _slot_name(label),
                                                 "type": typ, "linkIds": []})
            if not rec["linkIds"]:             # one output per (node, slot), however many nodes read it outside
                rec["linkIds"].append(lid)
                links.append({"id": lid, "origin_id": src, "origin_slot": sslot, "target_id": -20,
                              "target_slot": list(outs).index((src, sslot)), "type": typ})
    order = sorted(ins, key=lambda k: (INPUT_ORDER.index(ins[k]["type"]) if ins[k]["type"] in INPUT_ORDER
                                       else len(INPUT_ORDER), list(ins).index(k)))
    for ln in links:                           # inputs as loaders give them: model, clip, vae, then the rest
        if ln["origin_id"] == -10:
            ln["origin_slot"] = order.index(ln["origin_slot"])
    ins = {k: ins[k] for k in order}
    kept = {ln["id"] for ln in links}
    nodes = []
    for n in ui["nodes"]:
        if n["id"] in inside:
            n = json.loads(json.dumps(n))
            for o in n.get("outputs", []):
                o["links"] = [lid for lid in o["links"] if lid in kept]
            nodes.append(n)
    groups = []
    for grp in ui["groups"]:
        x, y, w, h = grp["bounding"]
        mine = [n for n in nodes if x <= n["pos"][0] < x + w]
        if mine:
            left = min(n["pos"][0] for n in mine) - GROUP_PAD
            right = max(n["pos"][0] + n["size"][0] for n in mine) + GROUP_PAD
            top = min(n["pos"][1] for n in mine) - TITLE_H - GROUP_TITLE_H
            bottom = max(n["pos"][1] + n["size"][1] for n in mine) + GROUP_PAD
            groups.append({**grp, "id": len(groups) + 1, "bounding": [left, top, right - left, bottom - top]})
    x0 = min(grp["bounding"][0] for grp in groups)
    x1 = max(grp["bounding"][0] + grp["bounding"][2] for grp in groups)
    y0 = min(grp["bounding"][1] for grp in groups)
    sub_id = _uuid(name, "subgraph")
    definition = {
        "id": sub_id, "version": 1, "revision": 0, "config": {}, "name": name,
        "state": {"lastGroupId": len(groups), "lastNodeId": max(byid), "lastLinkId": max(kept), "lastRerouteId": 0},
        "inputNode": {"id": -10, "bounding": [x0 - 180, y0, 140, 40 + 20 * len(ins)]},
        "outputNode": {"id": -20, "bounding": [x1 + 40, y0, 180, 40 + 20 * len(outs)]},
        "inputs": list(ins.values()), "outputs": list(outs.values()), "widgets": [],
        "nodes": nodes, "groups": groups, "links": links, "extra": {}}
    node = {"id": 1, "type": sub_id, "pos": [0, 0], "size": [320, 60 + 22 * (len(ins) + len(shown))], "flags": {},
            "order": 0, "mode": 0,
            "inputs": [{"name": r["name"], "type": r["type"], "link": None} for r in ins.values()],
            "outputs": [{"name": r["name"], "type": r["type"], "links": []} for r in outs.values()],
            "properties": {"proxyWidgets": [[str(i), w] for i, w in shown]}, "widgets_values": []}
    return {"id": _uuid(name, "blueprint"), "revision": 0, "last_node_id": 1, "last_link_id": 0, "nodes": [node],
            "links": [], "groups": [], "definitions": {"subgraphs": [definition]}, "config": {},
            "extra": {"BlueprintDescription": description}, "version": 0.4}


def build_blueprints(classes):
    """subgraphs/<name>.json, which ComfyUI 0.3.7x serves to the editor from a pack's subgraphs/ folder."""
    from .workflow_specs import BLUEPRINTS
    os.makedirs(os.path.join(REPO, "subgraphs"), exist_ok=True)
    out = []
    for name, (fn, description) in BLUEPRINTS.items():
        g = Graph(classes)
        inside, shown = fn(g)
        path = os.path.join(REPO, "subgraphs", f"{name}.json")
        with open(path, "w") as f:
            json.dump(subgraph_blueprint(g, inside, shown, name, description), f, indent=1)
            f.write("\n")
        out.append(path)
    return out


def build_all(classes):
    from .workflow_specs import WORKFLOWS
    out = []
    for name, fn in WORKFLOWS.items():
        g = Graph(classes)
        fn(g)
        out.append(write(name, g))
    return out


def main():
    from . import comfy_host
    comfy_host.boot(threads=1)
    import nodes
    for p in build_all(nodes.NODE_CLASS_MAPPINGS) + build_blueprints(nodes.NODE_CLASS_MAPPINGS):
        print(os.path.relpath(p, REPO))


if __name__ == "__main__":
    main()
