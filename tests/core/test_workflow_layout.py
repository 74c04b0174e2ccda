"""The example workflows read left to right by stage: labelled groups (load, tune, invert, edit, save),
every node inside its stage's group, no wire running backwards, no node on top of another."""
import glob
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json")))
TITLE_H = 30            # LiteGraph draws a node's title bar above its pos


def _box(n):
    x, y = n["pos"]
    w, h = n["size"]
    return x, y - TITLE_H, x + w, y + h


def _inside(inner, outer):
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_there_are_workflows():
    assert len(WORKFLOWS) >= 6


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_workflow_is_laid_out_by_stage(path):
    wf = json.load(open(path, encoding="utf-8"))
    groups = wf["groups"]
    titles = [g["title"] for g in groups]
    # the stages in order, left to right, numbered from 1; load, edit and save are always there
    assert [t.split(".")[0] for t in titles] == [str(i) for i in sorted(int(t.split(".")[0]) for t in titles)]
    assert titles[0].startswith("1. Load") and any(t.endswith("Edit") for t in titles) and "save" in titles[-1]
    boxes = [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
              g["bounding"][1] + g["bounding"][3]) for g in groups]
    assert all(a[2] <= b[0] for a, b in zip(boxes, boxes[1:]))           # side by side, no overlap
    nodes = {n["id"]: n for n in wf["nodes"]}
    group_of = {}
    for i, n in nodes.items():
        homes = [k for k, b in enumerate(boxes) if _inside(_box(n), b)]
        assert len(homes) == 1, (n["type"], n.get("title"), homes)
        group_of[i] = homes[0]
    assert set(group_of.values()) == set(range(len(groups)))           # no empty group
    assert nodes[min(nodes)]["type"] == "Note" and group_of[min(nodes)] == 0   # the Note opens the first group
    for _, src, _, dst, _, _ in wf["links"]:
        assert group_of[src] <= group_of[dst], (nodes[src]["type"], nodes[dst]["type"])
        assert nodes[src]["pos"][0] <= nodes[dst]["pos"][0], (nodes[src]["type"], nodes[dst]["type"])
    ids = sorted(nodes)
    for k, a in enumerate(ids):
        for b in ids[k + 1:]:
            assert not _overlap(_box(nodes[a]), _box(nodes[b])), (nodes[a]["type"], nodes[b]["type"])
