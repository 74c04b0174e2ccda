"""Write the example workflows in ComfyUI's UI (drag-and-drop) format from compact graph
descriptions, taking widget order and defaults from the live node classes so the files always
match the nodes. Run after changing a node's inputs:

    .venv/bin/python -m vp2p_dev.make_workflows        # rewrites workflows/*.json
"""
from __future__ import annotations

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LINK_TYPES_SKIP = ("*",)
NOTE_W, COL_W, ROW_GAP = 360, 400, 70


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
    """Nodes placed in columns; links by (node, output name or index)."""

    def __init__(self, classes):
        self.classes = classes
        self.nodes, self.links = [], []
        self.col_y = {}

    def add(self, class_type, col, title=None, widgets=None, height=None, **inputs):
        if class_type in ("Note", "MarkdownNote"):
            node = {"id": len(self.nodes) + 1, "type": "Note", "pos": self._place(col, height or 200, NOTE_W),
                    "size": [NOTE_W, height or 200], "flags": {}, "order": len(self.nodes), "mode": 0,
                    "properties": {"text": ""}, "widgets_values": [widgets]}
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
        node = {"id": len(self.nodes) + 1, "type": class_type, "pos": self._place(col, h), "size": [COL_W - 40, h],
                "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": node_inputs,
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                            for i, (n, t) in enumerate(zip(outs, cls.RETURN_TYPES))],
                "properties": {"Node name for S&R": class_type}, "widgets_values": values}
        if title:
            node["title"] = title
        self.nodes.append(node)
        # links were created before the node existed: fix their target ids
        for ln in self.links:
            if ln[3] is None:
                ln[3] = node["id"]
        return node["id"]

    def _place(self, col, h, w=COL_W):
        y = self.col_y.get(col, 40)
        self.col_y[col] = y + h + ROW_GAP
        return [40 + col * COL_W, y]

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

    def ui(self):
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
                "version": 0.4}


def write(name, graph):
    path = os.path.join(REPO, "workflows", name)
    with open(path, "w") as f:
        json.dump(graph.ui(), f, indent=1)
        f.write("\n")
    return path


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
    for p in build_all(nodes.NODE_CLASS_MAPPINGS):
        print(os.path.relpath(p, REPO))


if __name__ == "__main__":
    main()
