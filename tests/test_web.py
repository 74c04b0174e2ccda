"""The web extension in real headless Chromium against the real ComfyUI HTTP server: our nodes
render with no missing types, the P2P Controller shows the live alignment preview, and a
queued toy workflow produces its output. Screenshots go to artifacts/web/."""
import json
import os
import shutil
import time

import pytest

import comfy_host

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.path.join(REPO, "artifacts", "web")


def chrome_driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run scripts/setup_browser.sh")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if not binary or not os.path.exists(driver):
        pytest.fail("Chromium and its driver are not installed: run scripts/setup_browser.sh "
                    "(Debian packages chromium and chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def wait_for(driver, script, timeout=60, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = driver.execute_script(script)
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last value {last!r})")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.makedirs(SHOTS, exist_ok=True)
    out = tmp_path_factory.mktemp("web_out")
    srv = comfy_host.ComfyServer(log_path=str(out / "server.log"), extra_args=["--output-directory", str(out)])
    with srv:
        d = chrome_driver()
        try:
            d.get(srv.url)
            wait_for(d, "return !!(window.app && app.graph && window.LiteGraph && "
                        "LiteGraph.registered_node_types['VP2PController'])", 90, "the ComfyUI editor")
            yield d, srv
        finally:
            d.quit()


def load(driver, name):
    with open(os.path.join(REPO, "workflows", name)) as f:
        wf = json.load(f)
    driver.execute_script("app.loadGraphData(arguments[0]);", wf)
    time.sleep(1.0)
    return wf


def controller_preview(driver):
    return driver.execute_script(
        "const n = app.graph._nodes.find(n => n.type === 'VP2PController');"
        "const el = n && n.widgets.find(w => w.name === 'alignment');"
        "return el ? el.element.innerText : null;")


def set_widgets(driver, values):
    driver.execute_script(
        "const n = app.graph._nodes.find(n => n.type === 'VP2PController');"
        "for (const [k, v] of Object.entries(arguments[0])) n.widgets.find(w => w.name === k).value = v;"
        "app.graph.setDirtyCanvas(true, true);", values)


def test_route_directly(browser):
    _, srv = browser
    d = srv.post_json("/vp2p/align", {"source": "a red circle", "target": "a blue circle", "mode": "swap"})
    assert d["ok"] and d["pairs"] == [{"source": "red", "target": "blue", "op": "swap"}]
    d = srv.post_json("/vp2p/align", {"source": "a cat", "target": "a big cat", "mode": "swap"})
    assert not d["ok"] and "refine" in d["error"]


def test_workflow_renders_without_missing_nodes(browser):
    d, _ = browser
    wf = load(d, "toy_word_swap.json")
    types = d.execute_script("return app.graph._nodes.map(n => n.type);")
    assert sorted(types) == sorted(n["type"] for n in wf["nodes"])
    missing = d.execute_script("return app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type])"
                               ".map(n => n.type);")
    assert missing == []
    body = d.find_element("tag name", "body").text
    assert "were not found" not in body
    assert d.execute_script("return app.graph._nodes.find(n => n.type === 'VP2PDecoupledSampler').widgets"
                            ".map(w => w.name);") == ["cfg", "branch_batching"]
    d.save_screenshot(os.path.join(SHOTS, "toy_word_swap_workflow.png"))


def test_alignment_preview_live(browser):
    d, _ = browser
    load(d, "toy_word_swap.json")
    text = wait_for(d, "const n = app.graph._nodes.find(n => n.type === 'VP2PController');"
                       "const t = n.widgets.find(w => w.name === 'alignment').element.innerText;"
                       "return t.includes('red -> green') ? t : null;", 30, "the swap preview")
    assert "swap" in text
    set_widgets(d, {"target_text": "a big green circle on a striped gray background"})
    text = wait_for(d, "const t = app.graph._nodes.find(n => n.type === 'VP2PController').widgets"
                       ".find(w => w.name === 'alignment').element.innerText; return t.includes('error') ? t : null;",
                    30, "the swap-length error")
    assert "refine" in text
    d.save_screenshot(os.path.join(SHOTS, "alignment_error.png"))
    set_widgets(d, {"mode": "refine", "blend_words": "circle"})
    text = wait_for(d, "const t = app.graph._nodes.find(n => n.type === 'VP2PController').widgets"
                       ".find(w => w.name === 'alignment').element.innerText; return t.includes('+ big') ? t : null;",
                    30, "the refine preview")
    assert "error" not in text
    d.save_screenshot(os.path.join(SHOTS, "alignment_refine.png"))


def test_queue_toy_workflow_and_see_the_output(browser):
    d, srv = browser
    load(d, "toy_fast_mode.json")
    d.execute_script(
        "for (const n of app.graph._nodes) { if (n.type === 'VP2PSharedNullTextInvert')"
        " n.widgets.find(w => w.name === 'steps').value = 10; }")
    d.execute_script("app.queuePrompt(0, 1);")
    # the editor received the executed message with our preview (shown on the Save Video node)
    images = wait_for(d, "const n = app.graph._nodes.find(n => n.type === 'VP2PSaveVideo');"
                         "const o = app.nodeOutputs && app.nodeOutputs[n.id];"
                         "return o && o.images && o.images.length ? o.images : null;", 400, "the output in the editor")
    import urllib.parse
    import urllib.request
    q = urllib.parse.urlencode({k: images[0][k] for k in ("filename", "subfolder", "type")})
    data = urllib.request.urlopen(f"{srv.url}/view?{q}", timeout=30).read()
    assert data[:4] == b"RIFF" and len(data) > 100      # the animated webp preview is served
    d.execute_script("const n = app.graph._nodes.find(n => n.type === 'VP2PSaveVideo');"
                     "app.canvas.centerOnNode ? app.canvas.centerOnNode(n) : null; app.graph.setDirtyCanvas(true, true);")
    time.sleep(1.0)
    deadline = time.time() + 60
    while not srv.get_json("/history") and time.time() < deadline:    # written when the prompt ends
        time.sleep(0.5)
    hist = srv.get_json("/history")
    assert hist and all(h["status"]["status_str"] == "success" for h in hist.values())
    d.save_screenshot(os.path.join(SHOTS, "toy_fast_mode_done.png"))
