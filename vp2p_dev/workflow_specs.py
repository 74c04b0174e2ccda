"""The example workflows as compact graph descriptions (see make_workflows.py).

Columns: 0 inputs, 1 model preparation, 2 inversion, 3 edit, 4 outputs. Every workflow starts
with a Note saying what it does and which inputs to change."""
TOY_CKPT = "toy_world_sd1.safetensors"
TOY_SOURCE = "a red circle on a striped gray background"


def _toy_inputs(g, note, shape="circle", colour="red", background="striped", bg_colour="gray", **scene):
    g.add("Note", 0, title="About this workflow", widgets=note, height=260)
    ck = g.add("VP2PLoadSmallCheckpoint", 0, widgets={"ckpt_name": TOY_CKPT})
    vid = g.add("VP2PToyWorldVideo", 0, widgets={"shape": shape, "colour": colour, "background": background,
                                                  "background_colour": bg_colour, "frames": 8, **scene})
    return ck, vid


def _edit_chain(g, ck, frames_image, source, target, mode="swap", tune_steps=100, inv_mode="null-text",
                steps=50, controller=None, save_name="", branch_conds=None, **ctrl):
    """VAE encode -> inflate -> tune -> invert -> controller -> sampler -> decode/save."""
    lat = g.add("VAEEncode", 1, pixels=(frames_image, 0), vae=(ck, 2))
    infl = g.add("VP2PInflateT2SModel", 1, model=(ck, 0))
    if controller is None:
        controller = g.add("VP2PController", 2, widgets=dict(source_text=source, target_text=target, mode=mode,
                                                             **ctrl), clip=(ck, 1))
    tuned = g.add("VP2PTuneOnVideo", 1, widgets={"steps": tune_steps, "save_name": save_name}, model=(infl, 0),
                  latent=(lat, 0),
                  conditioning=(controller, "source"))
    empty = g.add("CLIPTextEncode", 2, title="Empty prompt", widgets={"text": ""}, clip=(ck, 1))
    inv = g.add("VP2PSharedNullTextInvert", 2, widgets={"steps": steps, "mode": inv_mode}, model=(tuned, 0),
                latent=(lat, 0), conditioning=(controller, "source"), empty_conditioning=(empty, 0))
    extra = branch_conds(controller) if branch_conds is not None else {}
    samp = g.add("VP2PDecoupledSampler", 3, model=(tuned, 0), inversion=(inv, "inversion"),
                 controller=(controller, "controller"), **extra)
    return lat, tuned, inv, controller, samp


def _outputs(g, ck, frames_image, inv, samp, prefix):
    edited = g.add("VAEDecode", 4, title="Edited frames", samples=(samp, "edited"), vae=(ck, 2))
    recon = g.add("VAEDecode", 4, title="Reconstruction", samples=(inv, "reconstruction"), vae=(ck, 2))
    g.add("VP2PSaveVideo", 4, widgets={"filename_prefix": f"video_p2p/{prefix}"}, images=(edited, 0))
    sbs = g.add("VP2PSideBySide", 4, a=(frames_image, 0), b=(recon, 0), c=(edited, 0))
    g.add("VP2PSaveVideo", 4, title="Save side by side", widgets={"filename_prefix": f"video_p2p/{prefix}_sbs",
                                                                  "format": "gif"}, images=(sbs, 0))
    g.add("SaveImage", 4, title="Side-by-side frames", widgets={"filename_prefix": f"video_p2p/{prefix}_sbs"},
          images=(sbs, 0))
    g.add("PreviewImage", 4, title="Attention maps", images=(samp, "attention_maps"))


def toy_word_swap(g):
    note = ("Video-P2P word swap on the embedded toy-world model (runs on CPU in minutes).\n\n"
            "Toy World Video renders 8 frames of a red circle moving over a striped gray background; the "
            "P2P Controller swaps 'red' -> 'green'. The model is inflated, tuned on the video (saved as "
            "output/video_p2p/toy_swap_*), the video is inverted with a shared null-text embedding (saved "
            "by Save Inversion), and the Decoupled Sampler edits it.\n\n"
            "Change: target_text (another colour or shape word: red green blue yellow purple orange / "
            "circle square triangle), the Toy World Video inputs, cross_replace / self_replace. Outputs: "
            "the edited video, a side-by-side (input | reconstruction | edit) and the attention maps of "
            "the changed word.")
    ck, vid = _toy_inputs(g, note)
    lat, tuned, inv, ctrl, samp = _edit_chain(g, ck, vid, TOY_SOURCE, "a green circle on a striped gray background",
                                              save_name="toy_swap")
    g.add("VP2PSaveInversion", 2, widgets={"filename_prefix": "toy_swap_inversion"}, inversion=(inv, "inversion"))
    _outputs(g, ck, vid, inv, samp, "toy_word_swap")


def toy_refine_local_blend(g):
    note = ("Refine with local blend (toy world). mode 'refine' aligns the prompts word by word: shared "
            "words copy the source attention, changed/added words keep their own. blend_words marks the "
            "region that may change (from those words' cross-attention, per frame); outside it every "
            "frame keeps the source exactly.\n\nChange: target_text, blend_words (words of either "
            "prompt), blend_threshold (higher = smaller region).")
    ck, vid = _toy_inputs(g, note, shape="square", colour="blue", background="checkered", bg_colour="pink")
    src = "a blue square on a checkered pink background"
    lat, tuned, inv, ctrl, samp = _edit_chain(
        g, ck, vid, src, "a blue triangle on a checkered pink background", mode="refine",
        blend_words="square, triangle", blend_threshold=0.3, cross_replace=0.4)
    _outputs(g, ck, vid, inv, samp, "toy_refine_blend")


def toy_reweight(g):
    note = ("Reweight (toy world): the same prompt, with the attention of chosen words scaled. Here "
            "'yellow' is weakened (scale 0.3) inside the cross-replace window; scales > 1 strengthen a "
            "word. To reweight an edit, build a swap/refine P2P Controller and connect it to 'previous'.")
    ck, vid = _toy_inputs(g, note, shape="triangle", colour="yellow", background="noisy", bg_colour="teal")
    src = "a yellow triangle on a noisy teal background"
    lat, tuned, inv, ctrl, samp = _edit_chain(g, ck, vid, src, src, mode="reweight", reweight_words="yellow",
                                              reweight_scales="0.3", cross_replace=0.8)
    _outputs(g, ck, vid, inv, samp, "toy_reweight")


def toy_two_objects(g):
    note = ("Only the named object changes (toy world, two objects). Toy World Video renders a red circle "
            "moving next to a blue square; the P2P Controller swaps 'square' -> 'triangle', so only the blue "
            "object may change, and the local blend on 'square, triangle' keeps everything outside those words' "
            "cross-attention (the circle and the background) from the source.\n\n"
            "Colour swaps of one of two objects are harder on this toy model: the blend word ('square') is then "
            "in both prompts, so the mask also takes the target branch's map of it, which can spread over the "
            "other object, and the target branch may then recolour that one too. Measured on this scene with "
            "'blue' -> 'yellow' and blend 'square': at cross_replace 0.2 the circle changes in 2 of 8 frames; "
            "at 0.5 it stays red and the square turns yellow in every frame.\n\n"
            "Change: target_text (another colour or shape for either object), blend_words (the edited "
            "object's shape words), the second_* inputs of Toy World Video.")
    ck, vid = _toy_inputs(g, note, start_x=0.25, start_y=0.65, end_x=0.45, end_y=0.65, radius=0.15,
                          end_radius=0.15, second_shape="square", second_colour="blue", second_start_x=0.72,
                          second_start_y=0.28, second_end_x=0.72, second_end_y=0.28, second_radius=0.14)
    src = "a red circle and a blue square on a striped gray background"
    lat, tuned, inv, ctrl, samp = _edit_chain(
        g, ck, vid, src, "a red circle and a blue triangle on a striped gray background",
        blend_words="square, triangle", inv_mode="direct-inversion")
    _outputs(g, ck, vid, inv, samp, "toy_two_objects")


def toy_fast_mode(g):
    note = ("Fast mode (toy world): no tuning and the official fast inversion (mode 'fast': DDIM inversion, "
            "no null-text optimisation, the source branch sampled at guidance 1): the cheapest edit. "
            "Compare with the word-swap workflow's side-by-side, or switch the mode to 'direct-inversion' "
            "(as cheap, and the source is reconstructed exactly).")
    ck, vid = _toy_inputs(g, note, colour="orange")
    src = "a orange circle on a striped gray background"
    lat = g.add("VAEEncode", 1, pixels=(vid, 0), vae=(ck, 2))
    infl = g.add("VP2PInflateT2SModel", 1, model=(ck, 0))
    ctrl = g.add("VP2PController", 2, widgets=dict(source_text=src, target_text="a purple circle on a striped gray background"),
                 clip=(ck, 1))
    empty = g.add("CLIPTextEncode", 2, title="Empty prompt", widgets={"text": ""}, clip=(ck, 1))
    inv = g.add("VP2PSharedNullTextInvert", 2, widgets={"steps": 50, "mode": "fast"}, model=(infl, 0),
                latent=(lat, 0), conditioning=(ctrl, "source"), empty_conditioning=(empty, 0))
    samp = g.add("VP2PDecoupledSampler", 3, model=(infl, 0), inversion=(inv, "inversion"), controller=(ctrl, "controller"))
    _outputs(g, ck, vid, inv, samp, "toy_fast")


def toy_reuse_saved(g):
    note = ("Reuse a saved tuning and a saved inversion (run 'toy_word_swap' first: it saves both under "
            "output/video_p2p/). Tuning and inversion are the expensive parts; here two target prompts are "
            "edited from them with no re-tuning and no re-inversion. Pick the files in Load Video Tuning "
            "and Load Inversion; the source text must be the one the video was inverted with.")
    g.add("Note", 0, title="About this workflow", widgets=note, height=260)
    ck = g.add("VP2PLoadSmallCheckpoint", 0, widgets={"ckpt_name": TOY_CKPT})
    infl = g.add("VP2PInflateT2SModel", 1, model=(ck, 0))
    tuned = g.add("VP2PLoadTuning", 1, widgets={"tuning_file": "toy_swap_00001_.safetensors"}, model=(infl, 0))
    inv = g.add("VP2PLoadInversion", 2, widgets={"inversion_file": "toy_swap_inversion_00001_.safetensors"},
                model=(tuned, 0))
    for i, target in enumerate(("a blue circle on a striped gray background", "a red square on a striped gray background")):
        ctrl = g.add("VP2PController", 2, widgets=dict(source_text=TOY_SOURCE, target_text=target), clip=(ck, 1))
        samp = g.add("VP2PDecoupledSampler", 3, model=(tuned, 0), inversion=(inv, "inversion"),
                     controller=(ctrl, "controller"))
        dec = g.add("VAEDecode", 4, samples=(samp, "edited"), vae=(ck, 2))
        g.add("VP2PSaveVideo", 4, widgets={"filename_prefix": f"video_p2p/toy_reuse_{i}"}, images=(dec, 0))


# the official edit config of the SD1.5 examples (see the preset table in docs/editing.md)
SD15_EDIT = dict(source="a man riding a bike", target="a man riding a motorbike", tune_steps=300,
                 inv_mode="direct-inversion", blend_words="bike, motorbike", reweight_words="motorbike",
                 reweight_scales="2", preset="word swap (car-drive)")


def _sd15_inputs(g, note, frame_count=8):
    g.add("Note", 0, title="About this workflow", widgets=note, height=300)
    ck = g.add("CheckpointLoaderSimple", 0, widgets={"ckpt_name": "v1-5-pruned-emaonly.safetensors"})
    vid = g.add("VP2PLoadVideo", 0, widgets={"video": "(none)", "path": "", "frame_count": frame_count,
                                              "width": 512, "height": 512})
    return ck, vid


def sd15_word_swap(g):
    note = ("Video-P2P word swap with your SD1.5 checkpoint and video, set up as the official edit configs "
            "are.\n\n"
            "Load Checkpoint: any SD1.x checkpoint. Load Video (VP2P): put the clip in ComfyUI's input folder "
            "(or set path); 8 frames at 512x512 as in the paper. Tune On Video: 300-500 steps (lr 3e-5). "
            "Shared Null-Text Invert: 50 steps, cfg 7.5; mode 'direct-inversion' (exact source, no "
            "optimisation; 'null-text' is the paper's, ~10x slower). P2P Controller: preset 'word swap "
            "(car-drive)' = the official car-drive config: the word swap wrapped in a x2 reweight of the new word "
            "('motorbike') and a local blend on 'bike, motorbike', cross_replace 0.2 / self_replace 0.5; for "
            "'man -> Spider-Man' take the strong reweight (x4), for an added attribute ('a origami rabbit') an "
            "'add an attribute' preset, for a style ('children drawing of ...') the style preset (0.8 / 0.7). "
            "Needs a GPU (~20 GB in "
            "fp32 for 8 frames; fp16 and gradient checkpointing lower that). Save the tuning and the "
            "inversion to try more targets cheaply (see toy_reuse_saved).")
    ck, vid = _sd15_inputs(g, note)
    lat, tuned, inv, ctrl, samp = _edit_chain(g, ck, vid, save_name="sd15_swap", **SD15_EDIT)
    _outputs(g, ck, vid, inv, samp, "sd15_word_swap")


def sd15_controlnet_word_swap(g):
    note = ("Video-P2P with a ControlNet: the word swap of sd15_word_swap, with the clip's Canny edges "
            "guiding both branches through an SD1.5 Canny ControlNet.\n\n"
            "Load ControlNet Model: control_v11p_sd15_canny (or another SD1.5 ControlNet with its "
            "preprocessor in place of Canny). Apply ControlNet takes the P2P Controller's TARGET conditioning "
            "as positive and its SOURCE conditioning as negative, and its two outputs go to the Decoupled "
            "Sampler's target_conditioning and source_conditioning: each branch (and its unconditional half) "
            "then carries the ControlNet. The prompts must stay the controller's (the sampler checks). Lower "
            "the strength if the edit cannot change the shape enough.")
    ck, vid = _sd15_inputs(g, note)
    cn = g.add("ControlNetLoader", 0, widgets={"control_net_name": "control_v11p_sd15_canny.pth"})
    edges = g.add("Canny", 1, widgets={"low_threshold": 0.4, "high_threshold": 0.8}, image=(vid, 0))

    def with_controlnet(controller):
        apply = g.add("ControlNetApplyAdvanced", 3, title="Apply ControlNet to both branches",
                      widgets={"strength": 0.8, "start_percent": 0.0, "end_percent": 1.0},
                      positive=(controller, "target"), negative=(controller, "source"), control_net=(cn, 0),
                      image=(edges, 0))
        return {"target_conditioning": (apply, 0), "source_conditioning": (apply, 1)}
    lat, tuned, inv, ctrl, samp = _edit_chain(g, ck, vid, save_name="sd15_cn_swap", branch_conds=with_controlnet,
                                              **SD15_EDIT)
    _outputs(g, ck, vid, inv, samp, "sd15_controlnet_word_swap")


# core's Context Windows (Manual) as the long-clip workflows set it (16-frame windows, 4 shared)
LONG_CLIP_WINDOWS = {"context_length": 16, "context_overlap": 4, "context_schedule": "standard_static",
                     "fuse_method": "pyramid"}


def _long_clip_chain(g, ck, frames_image, source, target, tune_steps, inv_mode, steps, save_name="", **ctrl):
    """The edit chain with core's Context Windows (Manual) on the inflated model: tuning, inversion
    and the sampler all evaluate the clip window by window (frame 0 in every window)."""
    lat = g.add("VAEEncode", 1, pixels=(frames_image, 0), vae=(ck, 2))
    infl = g.add("VP2PInflateT2SModel", 1, model=(ck, 0))
    win = g.add("ContextWindowsManual", 1, title="Context Windows (Manual): 16 frames, 4 shared",
                widgets=LONG_CLIP_WINDOWS, model=(infl, 0))
    controller = g.add("VP2PController", 2, widgets=dict(source_text=source, target_text=target, **ctrl),
                       clip=(ck, 1))
    tuned = g.add("VP2PTuneOnVideo", 1, widgets={"steps": tune_steps, "save_name": save_name}, model=(win, 0),
                  latent=(lat, 0), conditioning=(controller, "source"))
    empty = g.add("CLIPTextEncode", 2, title="Empty prompt", widgets={"text": ""}, clip=(ck, 1))
    inv = g.add("VP2PSharedNullTextInvert", 2, widgets={"steps": steps, "mode": inv_mode}, model=(tuned, 0),
                latent=(lat, 0), conditioning=(controller, "source"), empty_conditioning=(empty, 0))
    samp = g.add("VP2PDecoupledSampler", 3, model=(tuned, 0), inversion=(inv, "inversion"),
                 controller=(controller, "controller"))
    return lat, tuned, inv, controller, samp


def toy_long_clip(g):
    note = ("A long clip (toy world): 192 frames (8 s at 24 fps) of a red circle that crosses the frame, grows "
            "and turns, edited red -> green through core ComfyUI's Context Windows (Manual) on the inflated "
            "model: 16-frame windows sharing 4 frames, fused by 'pyramid'. Tune On Video trains on one random "
            "window per step, the inversion and the Decoupled Sampler evaluate the clip window by window, and "
            "frame attention reads the clip's frame 0 in every window (one appearance for the whole clip), so "
            "memory stays that of one window.\n\n"
            "Change: frames (any length; context_length must not exceed it), context_length / context_overlap "
            "(overlap 1/4 of the window is a good start; it must stay below the length), target_text. "
            "See docs/long_clips.md for costs and the seam measurements.")
    ck, vid = _toy_inputs(g, note, frames=192, start_x=0.2, end_x=0.8, radius=0.16, end_radius=0.26,
                          rotation=0.0, end_rotation=180.0)
    lat, tuned, inv, ctrl, samp = _long_clip_chain(g, ck, vid, TOY_SOURCE, "a green circle on a striped gray background",
                                                   tune_steps=100, inv_mode="direct-inversion", steps=50,
                                                   blend_words="circle")
    _outputs(g, ck, vid, inv, samp, "toy_long_clip")


def sd15_long_clip(g):
    note = ("A 10-second clip with SD1.5 (240 frames at 24 fps) through core ComfyUI's Context Windows "
            "(Manual): 16-frame windows sharing 4 frames. Load Video (VP2P): frame_count 240 at 512x512 "
            "(or fewer frames / a lower size to try it first). Tune On Video trains on one random window per "
            "step, so its memory is one window's whatever the clip length; inversion and editing evaluate the "
            "clip window by window with the clip's frame 0 in every window. Costs grow linearly with the "
            "frames (see docs/long_clips.md); 'direct-inversion' keeps the inversion as cheap as DDIM. Same "
            "official edit settings as sd15_word_swap.")
    ck, vid = _sd15_inputs(g, note, frame_count=240)
    edit = dict(SD15_EDIT)
    edit.pop("preset", None)
    lat, tuned, inv, ctrl, samp = _long_clip_chain(g, ck, vid, edit.pop("source"), edit.pop("target"),
                                                   tune_steps=edit.pop("tune_steps"), inv_mode=edit.pop("inv_mode"),
                                                   steps=50, save_name="sd15_long", **edit)
    _outputs(g, ck, vid, inv, samp, "sd15_long_clip")


WORKFLOWS = {
    "toy_word_swap.json": toy_word_swap,
    "toy_refine_local_blend.json": toy_refine_local_blend,
    "toy_reweight.json": toy_reweight,
    "toy_fast_mode.json": toy_fast_mode,
    "toy_two_objects.json": toy_two_objects,
    "toy_reuse_saved.json": toy_reuse_saved,
    "sd15_word_swap.json": sd15_word_swap,
    "sd15_controlnet_word_swap.json": sd15_controlnet_word_swap,
    "toy_long_clip.json": toy_long_clip,
    "sd15_long_clip.json": sd15_long_clip,
}


def video_p2p_edit_blueprint(g):
    """The whole edit as one subgraph: frames, MODEL, CLIP and VAE in; edited frames, reconstruction
    and attention maps out. The loaders and savers around it only name the subgraph's inputs and
    outputs; returns the nodes inside and the widgets shown on the subgraph node."""
    ck = g.add("CheckpointLoaderSimple", 0, widgets={"ckpt_name": "v1-5-pruned-emaonly.safetensors"})
    vid = g.add("VP2PLoadVideo", 0, widgets={"video": "(none)", "frame_count": 8, "width": 512, "height": 512})
    first = len(g.nodes) + 1
    lat, tuned, inv, ctrl, samp = _edit_chain(g, ck, vid, **SD15_EDIT)
    edited = g.add("VAEDecode", 4, title="Edited frames", samples=(samp, "edited"), vae=(ck, 2))
    recon = g.add("VAEDecode", 4, title="Reconstruction", samples=(inv, "reconstruction"), vae=(ck, 2))
    inside = list(range(first, len(g.nodes) + 1))
    g.add("VP2PSaveVideo", 5, images=(edited, 0))
    g.add("VP2PSaveVideo", 5, images=(recon, 0))
    g.add("PreviewImage", 5, title="Attention maps", images=(samp, "attention_maps"))
    shown = [(ctrl, "source_text"), (ctrl, "target_text"), (ctrl, "preset"), (ctrl, "blend_words"),
             (ctrl, "cross_replace"), (ctrl, "self_replace"), (tuned, "steps"), (inv, "mode")]
    return inside, shown


# subgraphs/<name>.json: blueprints the editor lists under "Subgraph Blueprints" (ComfyUI 0.3.7x on)
BLUEPRINTS = {
    "Video-P2P Edit": (video_p2p_edit_blueprint,
                       "Video-P2P on SD1.x: frames in, tuned, inverted and edited with prompt-to-prompt "
                       "control, edited frames out. Set the source prompt (what the clip shows) and the target "
                       "prompt (the same sentence with the edit); open the node to see the five method nodes."),
}
