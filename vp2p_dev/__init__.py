"""Maintainer tools, importable as one package (not shipped: vp2p_dev/ is in .comfyignore):
comfy_host (boots a real ComfyUI in-process), devkit (tiny models, helpers for tests and
benchmarks), the toy model's training (toy_train, toy_grow), the example workflows
(workflow_specs -> make_workflows, make_thumbnails, workflow_api) and the node reference
(node_table). Run the tools from the repository root, e.g. `python -m vp2p_dev.make_workflows`;
pytest and the benchmarks' preamble (bench/_common.py) put the root on the import path."""
