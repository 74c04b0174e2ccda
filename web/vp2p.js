// Video-P2P editor extension: a live token-alignment preview on the P2P Controller node
// (which words are swapped / added / removed / reweighted / blended, and why an edit cannot
// be aligned), computed by the pack's own aligner through POST /vp2p/align.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const WATCHED = ["source_text", "target_text", "mode", "reweight_words", "reweight_scales", "blend_words", "preset",
  "cross_replace", "word_windows"];
const COLOURS = { swap: "#f0a030", added: "#50c878", removed: "#e05050", keep: "#c8c8c8" };
const DEBOUNCE_MS = 300;   // wait this long after the last change before asking the server
const POLL_MS = 500;       // catches changes that fire no event (graph loads, scripted values)

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

function wordHtml(w) {
  const style = [`color:${COLOURS[w.op] || COLOURS.keep}`];
  const deco = [];
  if (w.op === "removed") deco.push("line-through");
  if (w.blend) deco.push("underline");
  if (deco.length) style.push(`text-decoration:${deco.join(" ")}`);
  const tip = `${w.op}, ${w.tokens} token${w.tokens === 1 ? "" : "s"}` +
    (w.scale != null ? `, attention x${w.scale}` : "") + (w.blend ? ", local blend" : "") +
    (w.window ? `, cross window ${w.window[0]}-${w.window[1]}` : "");
  const scale = w.scale != null && w.scale !== 1 ? `<sup>x${w.scale}</sup>` : "";
  return `<span title="${esc(tip)}" style="${style.join(";")}">${esc(w.word)}</span>${scale}`;
}

function render(el, d) {
  const lines = [];
  lines.push(`<div><b>src</b> ${(d.source || []).map(wordHtml).join(" ")}</div>`);
  lines.push(`<div><b>tgt</b> ${(d.target || []).map(wordHtml).join(" ")}</div>`);
  const pairs = (d.pairs || []).map((p) =>
    p.op === "swap" ? `${esc(p.source)} -> ${esc(p.target)}` : p.op === "added" ? `+ ${esc(p.target)}` : `- ${esc(p.source)}`);
  if (pairs.length) lines.push(`<div class="vp2p-pairs">${esc(d.mode)}: ${pairs.join(", ")}</div>`);
  else if (d.ok) lines.push(`<div class="vp2p-pairs">${esc(d.mode)}: no word changes</div>`);
  const target = d.target || [];
  const weighted = target.filter((w) => w.scale != null).map((w) => `${esc(w.word)} x${w.scale}`);
  if (weighted.length) lines.push(`<div class="vp2p-reweight">reweight: ${weighted.join(", ")}</div>`);
  const blend = target.filter((w) => w.blend).map((w) => esc(w.word));
  if (blend.length) lines.push(`<div class="vp2p-blend">blend: ${blend.join(", ")}</div>`);
  const windowed = target.filter((w) => w.window).map((w) => `${esc(w.word)} ${w.window[0]}-${w.window[1]}`);
  if (windowed.length && d.cross_window) {
    lines.push(`<div class="vp2p-windows">cross windows: ${windowed.join(", ")}; others ` +
      `${d.cross_window[0]}-${d.cross_window[1]}</div>`);
  }
  for (const w of d.warnings || []) lines.push(`<div class="vp2p-warning" style="color:#e8c040">warning: ${esc(w)}</div>`);
  if (d.error) lines.push(`<div class="vp2p-error" style="color:#ff6060">error: ${esc(d.error)}</div>`);
  el.innerHTML = lines.join("");
}

function addPreview(node) {
  const el = document.createElement("div");
  el.className = "vp2p-alignment";
  el.style.cssText = "font: 11px monospace; padding: 4px; overflow: auto; background: #1c1c1c; " +
    "border-radius: 4px; min-height: 64px; white-space: pre-wrap; word-break: break-word;";
  el.textContent = "alignment preview";
  node.addDOMWidget("alignment", "vp2p_alignment", el, {
    serialize: false, getValue() {}, setValue() {}, getMinHeight: () => 72, getMaxHeight: () => 160,
  });

  const values = () => {
    const vals = {};
    for (const name of WATCHED) vals[name] = node.widgets?.find((w) => w.name === name)?.value ?? "";
    return vals;
  };
  let sent = null;    // key of the values last sent to the server
  let seen = null;    // key of the values the poll saw last
  let timer = null;
  let busy = false;
  let again = false;

  const refresh = async () => {
    timer = null;
    if (busy) { again = true; return; }
    const vals = values();
    const key = JSON.stringify(vals);
    if (key === sent) return;
    sent = key;
    busy = true;
    el.style.opacity = "0.6";
    try {
      const res = await api.fetchApi("/vp2p/align", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ source: vals.source_text, target: vals.target_text, mode: vals.mode,
          reweight_words: vals.reweight_words, reweight_scales: vals.reweight_scales, blend_words: vals.blend_words,
          preset: vals.preset, cross_replace: vals.cross_replace, word_windows: vals.word_windows }),
      });
      render(el, await res.json());
    } catch (e) {
      el.textContent = `alignment preview unavailable: ${e}`;
    } finally {
      busy = false;
      el.style.opacity = "";
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => {
    seen = JSON.stringify(values());
    clearTimeout(timer);
    timer = setTimeout(refresh, DEBOUNCE_MS);
  };

  // typing in the prompt boxes and changing widgets restart the debounce timer
  for (const w of node.widgets || []) {
    if (!WATCHED.includes(w.name)) continue;
    w.inputEl?.addEventListener("input", schedule);
    const cb = w.callback;
    w.callback = function () {
      schedule();
      return cb?.apply(this, arguments);
    };
  }
  const poll = setInterval(() => {
    const key = JSON.stringify(values());
    if (key !== seen) { seen = key; schedule(); }
  }, POLL_MS);

  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    clearInterval(poll);
    clearTimeout(timer);
    return onRemoved?.apply(this, arguments);
  };
}

app.registerExtension({
  name: "videop2p.alignmentPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "VP2PController") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      addPreview(this);
      return r;
    };
  },
});

// Load Video (VP2P): clip_index walks a folder of clips, so its "control after generate" starts at
// "increment" (the editor's default for an INT control is "randomize"): Queue N edits clips
// 0..N-1. A workflow saved with another choice keeps it (loading sets the saved value afterwards).
app.registerExtension({
  name: "videop2p.clipIndex",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "VP2PLoadVideo") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      const control = this.widgets?.find((w) => w.name === "clip_index")?.linkedWidgets?.[0];
      if (control) control.value = "increment";
      return r;
    };
  },
});
