"""The web extension in real headless Chromium against the real ComfyUI HTTP server: our nodes
render with no missing types, the P2P Controller shows the live alignment preview while a
prompt is typed, and a queued toy workflow produces its output in the editor.
Screenshots and the browser console go to artifacts/web/."""
import glob
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from vp2p_dev import comfy_host

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(REPO, "artifacts", "web")
WORKFLOWS = sorted(glob.glob(os.path.join(REPO, "workflows", "*.json")))
INSTALL = "run `bash scripts/setup_browser.sh` (Debian packages chromium + chromium-driver, selenium into .venv)"

CONTROLLERS = "app.graph._nodes.filter(n => n.type === 'VP2PController')"
PREVIEW = f"(() => {{ const n = {CONTROLLERS}[0]; const w = n && n.widgets.find(w => w.name === 'alignment');" \
          " return w ? w.element.innerText : null; })()"

# fits the view to the node of type arguments[0] and all nodes right of it
FIT_VIEW = """
const first = app.graph._nodes.find(n => n.type === arguments[0]);
const ns = app.graph._nodes.filter(n => n.pos[0] >= first.pos[0]);
const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1])) - LiteGraph.NODE_TITLE_HEIGHT;
const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
const el = app.canvas.canvas, pad = 20;
const scale = Math.min(1, (el.clientWidth - 2 * pad) / (x1 - x0), (el.clientHeight - 2 * pad) / (y1 - y0));
app.canvas.ds.scale = scale;
app.canvas.ds.offset = [pad / scale - x0, pad / scale - y0];
app.graph.setDirtyCanvas(true, true);
"""


FRONTEND_OWN = []      # console errors the frontend logged by itself (see the browser fixture)
# Frontend 1.25 asks for a preview of whatever an upload combo holds when the node is created,
# also for Load Video (VP2P)'s "(none)" (= use the path input); 1.32 does not. Only that request
# is set aside.
# Frontend 1.32 asks for a help page in the user's locale first (docs/<NodeId>/en.md), then for
# docs/<NodeId>.md, which the pack ships: the first 404 is its lookup order, not a missing page.
LOCALE_HELP_PROBE = re.compile(r"^https?://127\.0\.0\.1:\d+/extensions/comfyui-video-p2p/docs/VP2P\w+/[a-z-]+\.md"
                               r" - Failed to load resource: the server responded with a status of 404")
# Frontend 1.35 (ComfyUI 0.8) logs this from its own GraphView when a node's help panel opens,
# also for core's KSampler on core's default graph: the frontend's, not this pack's.
HELP_PANEL_CLEANUP = re.compile(r'^https?://127\.0\.0\.1:\d+/assets/GraphView-[\w-]+\.js [\d:]+ "Attempted to cleanup event '
                                r'listeners for graph that was never set up"$')
PLACEHOLDER_PREVIEW = re.compile(r"^https?://127\.0\.0\.1:\d+/api/view\?type=input&filename=%28none%29&subfolder=&"
                                 r"rand=[0-9.]+ - Failed to load resource: the server responded with a status of 404")


def chrome_driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed: {INSTALL}")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if not binary or not os.path.exists(driver):
        pytest.fail(f"headless Chromium and its driver are not installed: {INSTALL}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1600,1000", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium never looks for (or downloads) a browser itself
    return webdriver.Chrome(service=Service(driver), options=opts)


def wait_for(driver, expr, timeout=60, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = driver.execute_script(f"return {expr};")
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value {last!r})")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.makedirs(SHOTS, exist_ok=True)
    out = tmp_path_factory.mktemp("web_out")
    log = out / "server.log"
    srv = comfy_host.ComfyServer(log_path=str(log), extra_args=["--output-directory", str(out)])
    with srv:
        # a returning user: no first-run template browser over the canvas
        srv.post("/settings", {"Comfy.TutorialCompleted": True})
        d = chrome_driver()
        try:
            d.get(srv.url)
            wait_for(d, "!!(window.app && app.graph && window.LiteGraph && "
                        "LiteGraph.registered_node_types['VP2PController'])", 90, "the ComfyUI editor")
            time.sleep(1)
            # frontend 1.32.9 logs a TypeError of its own at start-up, with or without custom nodes
            # (checked with --disable-all-custom-nodes); start-up errors that do not name this pack
            # are set aside, everything later counts
            FRONTEND_OWN.extend(e["message"] for e in console(d) if e["level"] == "SEVERE"
                                and "video-p2p" not in e["message"] and "vp2p" not in e["message"])
            yield d, srv
        finally:
            with open(os.path.join(SHOTS, "console.log"), "w") as f:
                for e in console(d):
                    f.write(f"{e['level']} {e['message']}\n")
            d.quit()
            shutil.copy(log, os.path.join(SHOTS, "server.log"))


def console(driver):
    """All browser console entries so far (chromedriver hands each entry out only once)."""
    seen = driver.__dict__.setdefault("_vp2p_console", [])
    seen.extend(driver.get_log("browser"))
    return seen


def load(driver, path):
    with open(path) as f:
        wf = json.load(f)
    driver.execute_script("app.loadGraphData(arguments[0]);", wf)
    time.sleep(0.5)
    return wf


def modal_text(driver):
    """Text of any visible ComfyUI dialog (e.g. the missing node types one)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.comfy-modal')].filter(m => m.offsetParent !== null)"
        ".map(m => m.innerText).join('\\n');")


def set_widgets(driver, values):
    driver.execute_script(
        f"const n = {CONTROLLERS}[0];"
        "for (const [k, v] of Object.entries(arguments[0])) n.widgets.find(w => w.name === k).value = v;"
        "app.graph.setDirtyCanvas(true, true);", values)


def wait_preview(driver, needle, what, timeout=30):
    return wait_for(driver, f"(() => {{ const t = {PREVIEW}; return t && t.includes({json.dumps(needle)}) ? t : null; }})()",
                    timeout, what)


def test_route_directly(browser):
    _, srv = browser
    d = srv.post_json("/vp2p/align", {"source": "a red circle", "target": "a blue circle", "mode": "swap"})
    assert d["ok"] and d["pairs"] == [{"source": "red", "target": "blue", "op": "swap"}]
    assert [w["op"] for w in d["target"]] == ["keep", "swap", "keep"]
    d = srv.post_json("/vp2p/align", {"source": "a cat", "target": "a big cat", "mode": "swap"})
    assert not d["ok"] and "refine" in d["error"]
    d = srv.post_json("/vp2p/align", {"source": "a cat", "target": "a big cat", "mode": "refine",
                                      "blend_words": "cat"})
    assert d["ok"] and d["pairs"] == [{"source": None, "target": "big", "op": "added"}]
    assert [w["blend"] for w in d["target"]] == [False, False, True]
    d = srv.post_json("/vp2p/align", {"source": "a cat", "target": "a fluffy cat", "mode": "reweight",
                                      "reweight_words": "fluffy", "reweight_scales": "2"})
    assert d["ok"] and [w["scale"] for w in d["target"]] == [None, 2.0, None]
    d = srv.post_json("/vp2p/align", {"source": "a cat", "target": "a fluffy cat", "mode": "reweight",
                                      "reweight_words": "fluffy, cat", "reweight_scales": "2, 1, 3"})
    assert not d["ok"] and "3 reweight scales for 2 reweight words" in d["error"]
    # bad input is reported to the editor, never an HTTP error
    assert srv.post_json("/vp2p/align", {"source": "a", "target": "a", "mode": "nope"})["ok"] is False
    assert srv.post_json("/vp2p/align", {"source": "a cat", "target": "a cat", "mode": "reweight",
                                         "reweight_words": "cat", "reweight_scales": "x"})["ok"] is False
    assert srv.post_json("/vp2p/align", ["not", "an", "object"])["ok"] is False


def test_extension_loaded(browser):
    d, _ = browser
    assert d.execute_script("return app.extensions.some(e => e.name === 'videop2p.alignmentPreview');")


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_workflow_renders_without_missing_nodes(browser, path):
    d, _ = browser
    wf = load(d, path)
    types = d.execute_script("return app.graph._nodes.map(n => n.type);")
    assert sorted(types) == sorted(n["type"] for n in wf["nodes"])
    missing = d.execute_script("return app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type])"
                               ".map(n => n.type);")
    assert missing == []
    assert "were not found" not in modal_text(d)
    # our nodes got their widgets, and every controller its preview, with no alignment error
    sampler = d.execute_script("const n = app.graph._nodes.find(n => n.type === 'VP2PDecoupledSampler');"
                               "return n ? n.widgets.map(w => w.name) : null;")
    assert sampler in (None, ["cfg", "branch_batching"])
    n_ctrl = d.execute_script(f"return {CONTROLLERS}.length;")
    assert n_ctrl >= 1
    texts = wait_for(d, f"(() => {{ const t = {CONTROLLERS}.map(n => n.widgets.find(w => w.name === 'alignment')"
                        ".element.innerText); return t.every(s => s.includes('tgt')) ? t : null; })()",
                     30, "every controller's preview")
    for t in texts:
        assert "error" not in t, t
    if os.path.basename(path) == "toy_word_swap.json":
        d.save_screenshot(os.path.join(SHOTS, "toy_word_swap_workflow.png"))


def test_alignment_preview_live(browser):
    from selenium.webdriver.common.keys import Keys
    d, _ = browser
    load(d, os.path.join(REPO, "workflows", "toy_word_swap.json"))
    text = wait_preview(d, "red -> green", "the swap preview")
    assert "swap: red -> green" in text and "error" not in text

    # type a target prompt with one more word into the node's text box, as a user does
    box = d.execute_script(f"return {CONTROLLERS}[0].widgets.find(w => w.name === 'target_text').inputEl;")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys("a big green circle on a striped gray background")
    # (the preview also shows the emptied box's error on the way: wait for the typed prompt's)
    text = wait_preview(d, "tgt a big green circle on a striped gray background", "the typed target")
    assert "error" in text and "refine" in text and "9" in text
    d.save_screenshot(os.path.join(SHOTS, "alignment_error.png"))

    set_widgets(d, {"mode": "refine", "blend_words": "circle"})
    text = wait_preview(d, "+ big", "the refine preview")
    assert "error" not in text and "blend: circle" in text
    d.save_screenshot(os.path.join(SHOTS, "alignment_refine.png"))

    set_widgets(d, {"mode": "reweight", "target_text": "a red circle on a striped gray background",
                    "reweight_words": "striped", "reweight_scales": "2.5", "blend_words": ""})
    text = wait_preview(d, "reweight: striped x2.5", "the reweight preview")
    assert "error" not in text

    set_widgets(d, {"mode": "swap", "target_text": "a red circle on a striped gray background",
                    "blend_words": "hexagon"})
    text = wait_preview(d, "warning", "the unknown blend word warning")
    assert "hexagon" in text and "no word changes" in text
    d.save_screenshot(os.path.join(SHOTS, "alignment_warning.png"))


# What an offline editor logs by itself: lookups of comfy.org services, and per-user files that
# do not exist yet (404). Anything else, and anything of this pack's, is an error.
OFFLINE_NOISE = re.compile(r"^(https?://[^ ]*(api\.comfy\.org|comfy\.org|favicon\.ico)[^ ]* - Failed to load resource"
                           r"|https?://127\.0\.0\.1:\d+/(api/)?(userdata[/?][^ ]*|user\.css) - Failed to load resource"
                           r": the server responded with a status of 404)")


def test_alignment_preview_in_the_vue_node_renderer(browser):
    """The frontend's "Nodes 2.0" (Vue) renderer draws nodes as DOM: the preview must be there too
    and follow widget changes."""
    d, _ = browser
    has_vue = d.execute_script("return app.extensionManager.setting.get('Comfy.VueNodes.Enabled') !== undefined;")
    if not has_vue:
        pytest.skip("this frontend has no Vue node renderer (Nodes 2.0)")
    # switch renderers on core's default graph first: what the frontend logs while switching is
    # its own (seen with 1.32.9: a TypeError in its settings watcher) and is set aside
    d.execute_script("app.loadGraphData();")
    before = len(console(d))
    d.execute_script("return app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true);")
    time.sleep(1.5)
    FRONTEND_OWN.extend(e["message"] for e in console(d)[before:] if e["level"] == "SEVERE")
    before = len(console(d))
    try:
        load(d, os.path.join(REPO, "workflows", "toy_word_swap.json"))
        wait_for(d, "document.querySelectorAll('[data-node-id]').length > 0", 30, "Vue-rendered nodes")
        text = wait_preview(d, "red -> green", "the swap preview in a Vue node")
        assert "error" not in text
        shown = d.execute_script(f"const n = {CONTROLLERS}[0]; const el = n.widgets.find(w => w.name === 'alignment')"
                                 ".element; return el.isConnected && !!el.closest('[data-node-id]') && "
                                 "el.getBoundingClientRect().height > 20;")
        assert shown, "the preview element is not inside the Vue node"
        set_widgets(d, {"target_text": "a red square on a striped gray background"})
        assert "circle -> square" in wait_preview(d, "circle -> square", "the updated preview in a Vue node")
        d.execute_script(FIT_VIEW, "VP2PController")
        time.sleep(0.5)
        d.save_screenshot(os.path.join(SHOTS, "vue_nodes_preview.png"))
        assert [e["message"] for e in console(d)[before:]
                if e["level"] == "SEVERE" and not OFFLINE_NOISE.match(e["message"])] == []
    finally:
        d.execute_script("app.loadGraphData();")
        before = len(console(d))
        d.execute_script("return app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false);")
        time.sleep(1.5)
        FRONTEND_OWN.extend(e["message"] for e in console(d)[before:] if e["level"] == "SEVERE")


PREVIEWS_SHOWN = """app.graph._nodes.filter(n => app.nodeOutputs[n.id] && app.nodeOutputs[n.id].images).every(n => {
  const files = app.nodeOutputs[n.id].images.map(i => i.filename);
  if (files.every(f => f.endsWith('.mp4'))) {
    const v = [...document.querySelectorAll('video')].find(v => v.src.includes(encodeURIComponent(files[0])));
    return !!v && v.readyState >= 2 && v.videoWidth > 0;
  }
  return !!n.imgs && n.imgs.length > 0 && n.imgs.every(i => i.complete && i.naturalWidth > 0);
})"""


# the editor's dialogs: PrimeVue's up to frontend 1.3x, role="dialog" elements in later ones (1.58)
DIALOG = ".p-dialog, [role=dialog]"
IN_DIALOG = ".p-dialog *, [role=dialog] *"


def close_dialogs(driver):
    """Closes every open dialog of the editor: its close (x) button, else Escape."""
    driver.execute_script("document.querySelectorAll('.p-dialog').forEach(d => { const b = d.querySelector("
                          "'.p-dialog-close-button, .p-dialog-header-close') || [...d.querySelectorAll('button')]"
                          ".find(b => b.querySelector('.pi-times')); if (b) b.click(); });"
                          "if (document.querySelector('[role=dialog]')) document.activeElement.dispatchEvent("
                          "new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}));")
    wait_for(driver, f"!document.querySelector({json.dumps(DIALOG)})", 10, "the dialogs to close")


def test_workflows_open_from_the_template_browser(browser):
    """Every example workflow is listed under the pack in the editor's template browser, with
    its thumbnail, and opens from there."""
    d, _ = browser
    names = [os.path.basename(p)[:-5] for p in WORKFLOWS]
    d.execute_script("app.extensionManager.command.execute('Comfy.BrowseTemplates');")
    # found and clicked in one script (the dialog re-renders while it loads: stale elements), and
    # clicked again if the click landed before the dialog was ready (no card of ours appears)
    click_entry = (f"(() => {{ const e = [...document.querySelectorAll({json.dumps(IN_DIALOG)})].find(e => "
                   f"e.children.length === 0 && (e.innerText || '').trim() === {json.dumps(comfy_host.PACK_DIRNAME)});"
                   " if (!e) return null; e.scrollIntoView(); e.click(); return true; })()")
    ours = " || ".join(f"document.querySelector('[data-testid=\"template-workflow-{n}\"]')" for n in names)
    for attempt in range(4):
        wait_for(d, click_entry, 30, "the pack's entry in the template browser")
        try:
            wait_for(d, f"!!({ours})", 5, "the pack's workflows in the template browser")
            break
        except AssertionError:
            if attempt == 3:
                raise
    from PIL import Image
    for name in names:
        with Image.open(os.path.join(REPO, "workflows", f"{name}.jpg")) as im:
            size = list(im.size)
        # 1.32 links the thumbnail, 1.25 fetches it into a blob: the decoded size must be the file's
        # the editor loads the thumbnails of the cards in view only (1.25 also unloads those that
        # leave it): scroll the card into view, then wait for its image (scrolling again if the
        # list was still moving)
        card = f"document.querySelector('[data-testid=\"template-workflow-{name}\"]')"
        loaded = (f"(() => {{ const c = {card}; const i = c && c.querySelector('img');"
                  " return i && i.complete && i.naturalWidth > 0 ? [i.getAttribute('src'), i.naturalWidth,"
                  " i.naturalHeight] : null; })()")
        got = None
        for attempt in range(3):
            wait_for(d, f"(() => {{ const c = {card}; if (!c) return null; c.scrollIntoView(); return true; }})()",
                     30, f"the card of {name}")
            try:
                got = wait_for(d, loaded, 10, f"the thumbnail of {name}")
                break
            except AssertionError:
                if attempt == 2:
                    raise
        assert got[1:] == size, (name, got, size)
        assert got[0].startswith("blob:") or f"/{name}.jpg" in got[0], (name, got)
    d.save_screenshot(os.path.join(SHOTS, "template_browser.png"))
    d.execute_script("document.querySelector('[data-testid=\"template-workflow-toy_word_swap\"]').click();")
    wf = json.load(open(os.path.join(REPO, "workflows", "toy_word_swap.json")))
    wait_for(d, f"app.graph._nodes.length === {len(wf['nodes'])} && "
                f"app.graph._nodes.some(n => n.type === 'VP2PController') && !document.querySelector({json.dumps(DIALOG)})",
             30, "toy_word_swap opened from the template browser")


def test_node_help_page_opens(browser):
    """The node's help panel (selection toolbox -> info) renders the pack's web/docs page."""
    d, _ = browser
    close_dialogs(d)
    load(d, os.path.join(REPO, "workflows", "toy_word_swap.json"))
    d.execute_script("const n = app.graph._nodes.find(n => n.type === 'VP2PDecoupledSampler');"
                     " app.canvas.deselectAll && app.canvas.deselectAll(); app.canvas.selectNode(n);"
                     " app.graph.setDirtyCanvas(true, true);")
    # the selection toolbox's help button: data-testid info-button (1.32), class help-button (1.25)
    help_button = "document.querySelector('[data-testid=info-button], .selection-toolbox .help-button')"
    wait_for(d, help_button, 30, "the node's help button")
    d.execute_script(f"{help_button}.click();")
    with open(os.path.join(REPO, "web", "docs", "VP2PDecoupledSampler.md"), encoding="utf-8") as f:
        doc = f.read()
    line = next(l.strip() for l in doc.splitlines() if l.strip().startswith("Node id"))
    needle = line.replace("`", "")[:40]
    text = wait_for(d, "(() => { const e = document.querySelector('.node-help-content');"
                       " return e && e.innerText.includes(" + json.dumps(needle) + ") ? e.innerText : null; })()",
                    30, "the help page of Decoupled Sampler")
    assert "Decoupled Sampler" in text
    d.save_screenshot(os.path.join(SHOTS, "node_help.png"))


def test_queue_toy_workflow_and_see_the_output(browser):
    d, srv = browser
    load(d, os.path.join(REPO, "workflows", "toy_fast_mode.json"))
    d.execute_script(
        "for (const n of app.graph._nodes) { if (n.type === 'VP2PSharedNullTextInvert')"
        " n.widgets.find(w => w.name === 'steps').value = 10; }")
    d.execute_script("app.queuePrompt(0, 1);")
    # the editor receives the executed messages: our Save Video preview and the attention maps
    outputs = ("(() => { const out = {}; for (const n of app.graph._nodes) {"
               " const o = app.nodeOutputs && app.nodeOutputs[n.id];"
               " if (o && o.images && o.images.length) out[n.title || n.type] = o.images; } return out; })()")
    deadline = time.time() + 400
    while time.time() < deadline:
        got = d.execute_script(f"return {outputs};")
        if "Save Video (VP2P)" in got and "Attention maps" in got:
            break
        errors = d.execute_script("return [app.lastNodeErrors, app.lastExecutionError];")
        hist = srv.get_json("/history")
        failed = [h["status"] for h in hist.values() if h.get("status", {}).get("status_str") == "error"]
        if any(errors) or failed:
            d.save_screenshot(os.path.join(SHOTS, "toy_fast_mode_error.png"))
            pytest.fail(f"the queued workflow failed: {errors} {failed} {modal_text(d)}")
        time.sleep(0.5)
    else:
        pytest.fail(f"no output in the editor after 400 s (got {sorted(got)})")
    img = got["Save Video (VP2P)"][0]
    q = urllib.parse.urlencode({k: img[k] for k in ("filename", "subfolder", "type")})
    data = urllib.request.urlopen(f"{srv.url}/view?{q}", timeout=30).read()
    if img["filename"].endswith(".mp4"):        # H.264 mp4, which the editor plays in a video element
        assert data[4:8] == b"ftyp" and b"avc1" in data
    else:
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"     # an animated webp preview
    deadline = time.time() + 60
    while not srv.get_json("/history") and time.time() < deadline:    # written when the prompt ends
        time.sleep(0.5)
    hist = srv.get_json("/history")
    assert hist and all(h["status"]["status_str"] == "success" for h in hist.values())
    # show the sampler and everything right of it: the editor loads a node's preview <img> when
    # it draws the node; an mp4 plays in the node's <video> (a decoded first frame is enough)
    d.execute_script(FIT_VIEW, "VP2PDecoupledSampler")
    wait_for(d, PREVIEWS_SHOWN, 30, "the output previews drawn on the canvas")
    time.sleep(0.3)
    d.save_screenshot(os.path.join(SHOTS, "toy_fast_mode_done.png"))


def test_queue_n_walks_a_folder_of_clips(browser, tmp_path):
    """Load Video (VP2P) with clip_folder: its clip_index control starts at 'increment', so
    Queue 3 from the editor loads clips 0, 1 and 2 of the folder, one per prompt."""
    import av
    import numpy as np
    d, srv = browser
    for i in range(3):
        with av.open(str(tmp_path / f"clip_{i}.mp4"), mode="w") as out:
            vs = out.add_stream("libx264", rate=8)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
            for _ in range(2):
                out.mux(vs.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 80 * i, np.uint8), format="rgb24")))
            out.mux(vs.encode(None))
    before = set(srv.get_json("/history"))
    control = d.execute_script("""
        app.graph.clear();
        const load = LiteGraph.createNode('VP2PLoadVideo'), show = LiteGraph.createNode('PreviewImage');
        app.graph.add(load); app.graph.add(show);
        load.connect(0, show, 0);
        const set = (k, v) => { load.widgets.find(w => w.name === k).value = v; };
        set('clip_folder', arguments[0]); set('width', 32); set('height', 32); set('frame_count', 2);
        return load.widgets.find(w => w.name === 'clip_index').linkedWidgets[0].value;""", str(tmp_path))
    assert control == "increment"
    d.execute_script("app.queuePrompt(0, 3);")
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = {k: v for k, v in srv.get_json("/history").items() if k not in before}
        if len(runs) == 3 and all(h.get("status", {}).get("completed") for h in runs.values()):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"3 prompts did not finish: {runs} {modal_text(d)}")
    indices = sorted(next(n["inputs"]["clip_index"] for n in h["prompt"][2].values()
                          if n["class_type"] == "VP2PLoadVideo") for h in runs.values())
    assert indices == [0, 1, 2]
    assert all(h["status"]["status_str"] == "success" for h in runs.values())
    assert d.execute_script("return app.graph._nodes.find(n => n.type === 'VP2PLoadVideo')"
                            ".widgets.find(w => w.name === 'clip_index').value;") == 3


BLUEPRINT = "Video-P2P Edit"
PINIA = "document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia._s"
# what the editor does when the blueprint is picked from the node library or the search box
DROP_BLUEPRINT = "const store = " + PINIA + """.get('subgraph');
const def = store.subgraphBlueprints.find(b => b.display_name === arguments[0]);
const bp = store.getBlueprint(def.name);
const node = app.canvas._deserializeItems({nodes: bp.nodes, subgraphs: bp.definitions.subgraphs},
                                          {position: [400, 300]}).nodes.values().next().value;
return {category: def.category, module: def.python_module, title: node.title,
        inputs: node.inputs.map(i => i.name), outputs: node.outputs.map(o => o.name),
        inside: node.subgraph.nodes.map(n => n.type), groups: node.subgraph.groups.map(g => g.title),
        widgets: node.widgets.map(w => [w.name, w.value])};"""


def test_subgraph_blueprint_loads_in_the_editor(browser):
    """subgraphs/Video-P2P Edit.json: the host serves it, the editor lists it as a node of the pack, and
    dropped on the canvas it is one node with the whole edit inside, whose prompt is the edit's nodes."""
    d, srv = browser
    try:
        entries = srv.get_json("/global_subgraphs")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
        pytest.skip(f"ComfyUI {comfy_host.leg()} has no subgraph blueprints (GET /global_subgraphs: 404); "
                    "they arrived in 0.3.7x, where this test loads the pack's blueprint")
    ours = [(k, e) for k, e in entries.items() if e["name"] == BLUEPRINT]
    assert len(ours) == 1 and ours[0][1]["info"]["node_pack"] == f"custom_nodes.{comfy_host.PACK_DIRNAME}"
    with open(os.path.join(REPO, "subgraphs", f"{BLUEPRINT}.json"), encoding="utf-8") as f:
        shipped = json.load(f)
    assert json.loads(srv.get_json(f"/global_subgraphs/{ours[0][0]}")["data"]) == shipped
    wait_for(d, f"{PINIA}.get('subgraph').subgraphBlueprints.some(b => b.display_name === {json.dumps(BLUEPRINT)})",
             30, "the blueprint in the editor's node library")
    d.execute_script("app.graph.clear();")
    got = d.execute_script(DROP_BLUEPRINT, BLUEPRINT)
    assert got["category"] == "Subgraph Blueprints" and got["module"] == f"custom_nodes.{comfy_host.PACK_DIRNAME}"
    assert got["title"] == BLUEPRINT
    assert got["inputs"] == ["model", "clip", "vae", "frames"]
    assert got["outputs"] == ["edited_frames", "reconstruction", "attention_maps"]
    method = ["VP2PInflateT2SModel", "VP2PController", "VP2PTuneOnVideo", "VP2PSharedNullTextInvert",
              "VP2PDecoupledSampler"]
    assert all(got["inside"].count(t) == 1 for t in method) and got["inside"].count("VAEDecode") == 2
    assert got["groups"][0].startswith("1. Load") and got["groups"][-1].startswith("5.")
    widgets = dict(got["widgets"])                 # the controller's prompts are on the subgraph node
    ctrl = next(n for n in shipped["definitions"]["subgraphs"][0]["nodes"] if n["type"] == "VP2PController")
    assert widgets[f"{ctrl['id']}: source_text"] == ctrl["widgets_values"][0] == "a man riding a bike"
    # the prompt the editor would queue is the edit's own nodes, wired inside the subgraph
    prompt = d.execute_script("return app.graphToPrompt().then(p => p.output);")
    types = sorted(n["class_type"] for n in prompt.values())
    assert types == sorted(got["inside"])
    by_type = {n["class_type"]: (k, n) for k, n in prompt.items()}
    assert by_type["VP2PDecoupledSampler"][1]["inputs"]["model"][0] == by_type["VP2PTuneOnVideo"][0]
    assert by_type["VP2PDecoupledSampler"][1]["inputs"]["inversion"][0] == by_type["VP2PSharedNullTextInvert"][0]
    d.execute_script("app.canvas.setDirty(true, true);")
    d.save_screenshot(os.path.join(SHOTS, "subgraph_blueprint.png"))
    d.execute_script("app.graph.clear();")


def test_no_errors_in_the_browser_console(browser):
    d, _ = browser
    errors = [e["message"] for e in console(d) if e["level"] == "SEVERE"]
    ours = [m for m in errors if not OFFLINE_NOISE.match(m) and not PLACEHOLDER_PREVIEW.match(m)
            and not LOCALE_HELP_PROBE.match(m) and not HELP_PANEL_CLEANUP.match(m) and m not in FRONTEND_OWN]
    assert not ours, "errors in the browser console:\n" + "\n".join(ours)
