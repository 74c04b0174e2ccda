"""Convert a ComfyUI UI-format workflow (what the editor saves and loads by drag-and-drop) into
the API format the executor runs ({id: {class_type, inputs}}), using the live node classes for
the widget order — the same mapping the frontend's "Save (API format)" performs.

Handles Note/MarkdownNote (dropped), Reroute (followed), PrimitiveNode (its value goes to
the widgets it feeds), widgets converted to inputs, the extra "control_after_generate" value
the frontend stores after seed-like INT widgets, muted nodes (mode 2: dropped) and bypassed
nodes (mode 4: inputs passed through to outputs of the same type)."""
from __future__ import annotations

import json

VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")   # COMBO: a V3 combo, options in its dict


def _is_widget(spec):
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def _has_control(name, spec):
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return spec[0] == "INT" and (name in ("seed", "noise_seed") or bool(opts.get("control_after_generate")))


class PublishedNode:
    """A node class as a running server publishes it (GET /object_info): the converter needs only
    INPUT_TYPES, so workflows of a remote or user-style install convert without importing its nodes."""

    def __init__(self, info):
        self.info = info

    def INPUT_TYPES(self):
        return self.info["input"]


def published_classes(object_info: dict) -> dict:
    return {name: PublishedNode(spec) for name, spec in object_info.items()}


def missing_node_types(ui: dict, classes: dict) -> list:
    return sorted({n["type"] for n in ui.get("nodes", []) if n["type"] not in VIRTUAL and n["type"] not in classes})


def ui_to_api(ui: dict, classes: dict) -> dict:
    missing = missing_node_types(ui, classes)
    if missing:
        raise ValueError(f"workflow uses node types that are not installed: {missing}")
    nodes = {n["id"]: n for n in ui["nodes"]}
    links = {ln[0]: ln for ln in ui.get("links", [])}          # id -> [id, from, from_slot, to, to_slot, type]

    def source(link_id):
        """(node id, slot) of the real producer of a link, through reroutes and bypassed nodes;
        ('value', v) for a PrimitiveNode; None when nothing (a muted node) produces it."""
        seen = 0
        while link_id is not None and seen < 1000:
            seen += 1
            _, src, slot, _, _, typ = links[link_id][:6]
            node = nodes[src]
            if node.get("mode", 0) == 2:
                return None
            if node["type"] == "Reroute":
                link_id = node["inputs"][0].get("link")
                continue
            if node["type"] == "PrimitiveNode":
                return ("value", (node.get("widgets_values") or [None])[0])
            if node.get("mode", 0) == 4:      # bypass: first input of the same type
                out_type = node["outputs"][slot]["type"]
                link_id = next((i.get("link") for i in node.get("inputs", [])
                                if i.get("type") == out_type and i.get("link") is not None), None)
                if link_id is None:
                    return None
                continue
            return (str(src), slot)
        return None

    api = {}
    for nid, node in nodes.items():
        if node["type"] in VIRTUAL or node.get("mode", 0) in (2, 4):
            continue
        cls = classes[node["type"]]
        types = cls.INPUT_TYPES()
        linked = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):      # some packs store a name -> value dict
            values = None
        inputs, k = {}, 0
        for group in ("required", "optional"):
            for name, spec in types.get(group, {}).items():
                widget = _is_widget(spec)
                if widget and values is not None:
                    value = values[k] if k < len(values) else None
                    k += 1 + int(_has_control(name, spec))
                elif widget:
                    value = node["widgets_values"].get(name)
                else:
                    value = None
                if name in linked:
                    src = source(linked[name])
                    if src is None:
                        continue
                    inputs[name] = src[1] if src[0] == "value" else [src[0], src[1]]
                elif widget and value is not None:
                    inputs[name] = value
        entry = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        api[str(nid)] = entry
    return api


def load_workflow(path: str, classes: dict) -> dict:
    """API prompt from a UI-format or API-format JSON file."""
    with open(path) as f:
        data = json.load(f)
    if "nodes" in data and "links" in data:
        return ui_to_api(data, classes)
    return data
