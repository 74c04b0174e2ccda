"""The README's editor screenshot: one example workflow in the real editor (headless Chromium against
the real ComfyUI server), fitted to view, with nothing else open (one workflow tab, no banner, no panel).

    .venv/bin/python -m vp2p_dev.editor_shot                       # workflows/toy_word_swap.json -> docs/toy_workflow.png
    .venv/bin/python -m vp2p_dev.editor_shot WORKFLOW.json OUT.png
Needs the browser of the editor tests (`bash scripts/setup_browser.sh`).
"""
import argparse
import json
import os
import shutil
import tempfile
import time

from . import comfy_host

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# fits the view to every node and group, under the top bar
FIT_ALL = """
const g = app.graph, T = LiteGraph.NODE_TITLE_HEIGHT;
const boxes = g._nodes.map(n => [n.pos[0], n.pos[1] - T, n.pos[0] + n.size[0], n.pos[1] + n.size[1]])
  .concat((g._groups || g.groups || []).map(r => { const b = r._bounding || r.bounding;
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]; }));
const x0 = Math.min(...boxes.map(b => b[0])), y0 = Math.min(...boxes.map(b => b[1]));
const x1 = Math.max(...boxes.map(b => b[2])), y1 = Math.max(...boxes.map(b => b[3]));
const el = app.canvas.canvas, pad = 16, top = arguments[0];
const scale = Math.min((el.clientWidth - 2 * pad) / (x1 - x0), (el.clientHeight - top - 2 * pad) / (y1 - y0));
app.canvas.ds.scale = scale;
app.canvas.ds.offset = [(el.clientWidth - scale * (x1 - x0)) / 2 / scale - x0, (top + pad) / scale - y0];
app.graph.setDirtyCanvas(true, true);
"""


def driver(width, height):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))))
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--disable-extensions", "--hide-scrollbars"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"),
                            options=opts)


def wait(d, expr, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        if d.execute_script(f"return {expr};"):
            return
        time.sleep(0.2)
    raise TimeoutError(expr)


def shoot(workflow, out, width=1700, height=1150):
    with open(workflow, encoding="utf-8") as f:
        wf = json.load(f)
    name = os.path.splitext(os.path.basename(workflow))[0]
    with tempfile.TemporaryDirectory() as tmp, \
            comfy_host.ComfyServer(log_path=os.path.join(tmp, "server.log"),
                                   extra_args=["--output-directory", tmp]) as srv:
        # a returning user on the classic renderer: no tours, no minimap or canvas info, node text at any zoom
        srv.post("/settings", {"Comfy.TutorialCompleted": True, "Comfy.VueNodes.Enabled": False,
                               "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False,
                               "LiteGraph.Canvas.MinFontSizeForLOD": 0})
        d = driver(width, height)
        try:
            d.get(srv.url)
            # who dismissed the "Nodes 2.0" banner (the editor keeps that in localStorage)
            d.execute_script("localStorage.setItem('vueNodesBannerDismissed', 'true');")
            d.refresh()
            wait(d, "!!(window.app && app.graph && LiteGraph.registered_node_types['VP2PController'])")
            time.sleep(1.5)
            d.execute_script("return app.loadGraphData(arguments[0], true, true, arguments[1]);", wf, name)
            time.sleep(1.0)
            # the workflow's tab only: the start-up graph's "Unsaved Workflow" tab is closed (frontends
            # without a workflow store have no tabs)
            d.execute_script("const ws = app.extensionManager && app.extensionManager.workflow; if (!ws) return;"
                             "return Promise.all(ws.openWorkflows.filter(w => w.filename !== arguments[0])"
                             ".map(w => ws.closeWorkflow(w)));", name)
            time.sleep(1.0)
            d.execute_script(  # close what the editor may show over the canvas: toasts, banners, dialogs
                "document.querySelectorAll('.p-toast-close-button, .p-message-close, .p-dialog-close-button')"
                ".forEach(b => b.click()); app.canvas.deselectAll && app.canvas.deselectAll();")
            top = d.execute_script("const c = app.canvas.canvas.getBoundingClientRect(); const bars = [...document"
                                   ".querySelectorAll('.workflow-tabs-container, .comfyui-menu, .actionbar, "
                                   "[class*=topbar]')].map(e => e.getBoundingClientRect()).filter(r => r.height > 0 "
                                   "&& r.top < 120); return Math.max(0, ...bars.map(r => r.bottom)) - c.top;")
            d.execute_script(FIT_ALL, top)
            time.sleep(1.0)
            d.save_screenshot(out)
            return d.execute_script("return [document.querySelectorAll('.workflow-tab, [data-testid*=workflow-tab]')"
                                    ".length, app.graph._nodes.length, (app.graph._groups || []).length];")
        finally:
            d.quit()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", nargs="?", default=os.path.join(REPO, "workflows", "toy_word_swap.json"))
    ap.add_argument("out", nargs="?", default=os.path.join(REPO, "docs", "toy_workflow.png"))
    a = ap.parse_args()
    tabs, nodes, groups = shoot(a.workflow, a.out)
    print(f"{os.path.relpath(a.out, REPO)}: {nodes} nodes in {groups} groups, {tabs} workflow tab(s) open")


if __name__ == "__main__":
    main()
