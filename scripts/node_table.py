"""Print the README's node reference (markdown) from the live node classes in a booted ComfyUI,
so the documented inputs, defaults and explanations are exactly what the editor shows."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _default(spec):
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return opts.get("default", spec[0][0] if spec[0] else "")
    return opts.get("default", "")


def _kind(spec):
    return "choice" if isinstance(spec[0], list) else spec[0]


def node_markdown(class_name, cls, display):
    lines = [f"### {display}", ""]
    desc = getattr(cls, "DESCRIPTION", "") or (cls.__doc__ or "").strip().split("\n")[0]
    if desc:
        lines += [desc, ""]
    lines += ["| input | type | default | what it does / when to change it |", "|---|---|---|---|"]
    types = cls.INPUT_TYPES()
    for group in ("required", "optional"):
        for name, spec in types.get(group, {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            kind = _kind(spec)
            if kind == "choice":
                kind = " / ".join(str(c) for c in spec[0][:6]) + (" …" if len(spec[0]) > 6 else "")
            default = _default(spec) if kind not in ("MODEL", "CLIP", "VAE", "LATENT", "IMAGE") else ""
            tip = opts.get("tooltip", "").replace("\n", " ").replace("|", "\\|")
            opt = " (optional)" if group == "optional" else ""
            lines.append(f"| `{name}`{opt} | {kind} | {default if default != '' else ''} | {tip} |")
    outs = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    lines += ["", "Outputs: " + ", ".join(f"`{n}` ({t})" for n, t in zip(outs, cls.RETURN_TYPES)), ""]
    return "\n".join(lines)


def main():
    import comfy_host
    comfy_host.boot(threads=1)
    pack = comfy_host.pack_module("nodes")
    order = ["VP2PInflateT2SModel", "VP2PTuneOnVideo", "VP2PLoadTuning", "VP2PSharedNullTextInvert",
             "VP2PSaveInversion", "VP2PLoadInversion", "VP2PController", "VP2PDecoupledSampler", "VP2PLoadVideo",
             "VP2PSaveVideo", "VP2PSideBySide", "VP2PLoadSmallCheckpoint", "VP2PToyWorldVideo", "VP2PToyWorldOracle"]
    names = sorted(pack.NODE_CLASS_MAPPINGS, key=lambda n: order.index(n) if n in order else len(order))
    for name in names:
        cls = pack.NODE_CLASS_MAPPINGS[name]
        print(node_markdown(name, cls, pack.NODE_DISPLAY_NAME_MAPPINGS.get(name, name)))


if __name__ == "__main__":
    main()
