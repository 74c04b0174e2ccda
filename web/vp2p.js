// Video-P2P editor extension: a live token-alignment preview on the P2P Controller node
// (which words are swapped / added / removed / reweighted / blended, and why an edit cannot
// be aligned), computed by the pack's own aligner through POST /vp2p/align.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const WATCHED = ["source_text", "target_text", "mode", "reweight_words", "reweight_scales", "blend_words"];
const COLOURS = { swap: "#f0a030", added: "#50c878", removed: "#e05050", keep: "#c8c8c8" };

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

function render(el, d) {
  if (!d) return;
  const word = (w) => {
    let style = `color:${COLOURS[w.op] || COLOURS.keep}`;
    if (w.op === "removed") style += ";text-decoration:line-through";
    if (w.blend) style += ";text-decoration:underline";
    const scale = w.scale != null && w.scale !== 1 ? `<sup>x${w.scale}</sup>` : "";
    return `<span style="${style}">${esc(w.word)}</span>${scale}`;
  };
  const lines = [];
  lines.push(`<div><b>src</b> ${(d.source || []).map(word).join(" ")}</div>`);
  lines.push(`<div><b>tgt</b> ${(d.target || []).map(word).join(" ")}</div>`);
  const pairs = (d.pairs || []).map((p) =>
    p.op === "swap" ? `${esc(p.source)} -> ${esc(p.target)}` : p.op === "added" ? `+ ${esc(p.target)}` : `- ${esc(p.source)}`);
  if (pairs.length) lines.push(`<div class="vp2p-pairs">${d.mode}: ${pairs.join(", ")}</div>`);
  else if (d.ok) lines.push(`<div class="vp2p-pairs">${d.mode}: no word changes</div>`);
  for (const w of d.warnings || []) lines.push(`<div class="vp2p-warning" style="color:#e8c040">warning: ${esc(w)}</div>`);
  if (d.error) lines.push(`<div class="vp2p-error" style="color:#ff6060">error: ${esc(d.error)}</div>`);
  el.innerHTML = lines.join("");
}

app.registerExtension({
  name: "videop2p.alignmentPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "VP2PController") return;
    const onCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onCreated?.apply(this, arguments);
      const el = document.createElement("div");
      el.className = "vp2p-alignment";
      el.style.cssText = "font: 11px monospace; padding: 4px; overflow: auto; background: #1c1c1c; border-radius: 4px;";
      el.textContent = "alignment preview";
      el.style.minHeight = "64px";
      this.addDOMWidget("alignment", "vp2p_alignment", el, {
        serialize: false, getValue() {}, setValue() {}, getMinHeight: () => 72, getMaxHeight: () => 160,
      });
      let last = null;
      let busy = false;
      const refresh = async () => {
        if (busy) return;
        const vals = {};
        for (const name of WATCHED) vals[name] = this.widgets?.find((w) => w.name === name)?.value ?? "";
        const key = JSON.stringify(vals);
        if (key === last) return;
        last = key;
        busy = true;
        try {
          const res = await api.fetchApi("/vp2p/align", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ source: vals.source_text, target: vals.target_text, mode: vals.mode,
              reweight_words: vals.reweight_words, reweight_scales: vals.reweight_scales, blend_words: vals.blend_words }),
          });
          render(el, await res.json());
        } catch (e) {
          el.textContent = `alignment preview unavailable: ${e}`;
        } finally {
          busy = false;
        }
      };
      // poll the widgets (typing in a multiline widget fires no callback), debounced by the key check
      this.vp2pTimer = setInterval(refresh, 400);
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        clearInterval(this.vp2pTimer);
        return onRemoved?.apply(this, arguments);
      };
      return r;
    };
  },
});
