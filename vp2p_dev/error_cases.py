"""The bad inputs the tests try, as one table: each case builds an API prompt that a user could
queue, and says the message the user then reads. tests/host/test_reliability.py runs every case
through ComfyUI's real validation and executor and checks the message; docs/errors.md is written
from the same table (`python -m vp2p_dev.error_cases`), and a test checks it is up to date, so
the page lists exactly what the tests saw.

In `expect`, '…' stands for a part that varies (a folder, a file size, a library's wording)."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "errors.md")


@dataclass
class Ctx:
    """What a case builds its prompt from (filled by the test's fixtures)."""
    tmp: str            # a fresh folder
    outdir: str         # ComfyUI's output folder (fresh)
    indir: str          # ComfyUI's input folder (fresh)
    ckpt: str           # the tiny checkpoint's name
    tuning: str         # path of a real saved tuning (of ckpt, inflated with defaults)
    inversion: str      # path of a real saved inversion (of ckpt, 4 frames of 8x8 latents)
    clip: Callable      # clip(path, frames=6): writes a small mp4 there, returns the path


@dataclass
class Case:
    id: str
    node: str           # the node's display name
    does: str           # what the user does
    when: str           # "queue" (refused before anything runs) or "run" (the node fails while running)
    expect: str         # the message the user reads
    build: Callable     # Ctx -> prompt, or (prompt, after_validation)

    def pattern(self) -> re.Pattern:
        return re.compile(".*?".join(re.escape(p) for p in self.expect.split("…")), re.S)


# --------------------------------------------------------------------------- prompts
def load_video(ctx, **inputs):
    base = {"video": "(none)", "path": "", "frame_start": 0, "frame_count": 8, "stride": 1, "width": 0,
            "height": 0, "multiple_of": 8, "resize_mode": "crop"}
    return {"1": {"class_type": "VP2PLoadVideo", "inputs": dict(base, **inputs)},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def save_video(ctx, prefix):
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 0}},
            "2": {"class_type": "VP2PSaveVideo", "inputs": {"images": ["1", 0], "fps": 8.0,
                                                            "filename_prefix": prefix, "format": "gif"}}}


def model_graph(ctx, node):
    """tiny checkpoint -> Inflate T2S Model -> `node` (a MODEL) -> KSampler -> SaveLatent."""
    g = {
        "1": {"class_type": "VP2PLoadSmallCheckpoint", "inputs": {"ckpt_name": ctx.ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red circle"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 4}},
        "10": {"class_type": "VP2PInflateT2SModel", "inputs": {
            "model": ["1", 0], "temporal_attention": True, "video_norm": True, "frame_chunk": 0, "seed": 0}},
        "11": node,
        "5": {"class_type": "KSampler", "inputs": {"model": ["11", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": 0, "steps": 1, "cfg": 7.5,
                                                   "sampler_name": "ddim", "scheduler": "ddim_uniform",
                                                   "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "vp2p_test/err"}},
    }
    return g


def load_tuning(ctx, name):
    return model_graph(ctx, {"class_type": "VP2PLoadTuning", "inputs": {"model": ["10", 0], "tuning_file": name}})


def tune(ctx, save_name):
    return model_graph(ctx, {"class_type": "VP2PTuneOnVideo", "inputs": {
        "model": ["10", 0], "latent": ["4", 0], "conditioning": ["2", 0], "steps": 1, "learning_rate": 1e-3,
        "seed": 33, "save_name": save_name, "mixed_precision": "off", "gradient_checkpointing": False}})


def load_inversion(ctx, name):
    return {
        "1": {"class_type": "VP2PLoadSmallCheckpoint", "inputs": {"ckpt_name": ctx.ckpt}},
        "8": {"class_type": "VP2PLoadInversion", "inputs": {"inversion_file": name, "model": ["1", 0]}},
        "9": {"class_type": "VP2PSaveInversion", "inputs": {"inversion": ["8", 0], "filename_prefix": "again"}},
    }


def controller(ctx, source, target, **inputs):
    """tiny checkpoint -> P2P Controller -> (its target/source conditionings) KSampler -> SaveLatent."""
    base = {"clip": ["1", 1], "source_text": source, "target_text": target, "mode": "swap", "cross_replace": 0.2,
            "self_replace": 0.5, "reweight_words": "", "reweight_scales": "", "blend_words": "",
            "blend_threshold": 0.3, "blend_start": 0.2, "controlled_layers": "cross+temporal (paper)", "map_words": ""}
    return {
        "1": {"class_type": "VP2PLoadSmallCheckpoint", "inputs": {"ckpt_name": ctx.ckpt}},
        "2": {"class_type": "VP2PController", "inputs": dict(base, **inputs)},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 2], "negative": ["2", 1],
                                                   "latent_image": ["4", 0], "seed": 0, "steps": 1, "cfg": 7.5,
                                                   "sampler_name": "ddim", "scheduler": "ddim_uniform",
                                                   "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "vp2p_test/err"}},
    }


# --------------------------------------------------------------------------- damaged files
def store_copy(ctx, src, name):
    """A copy of a real saved file in output/video_p2p/ under `name`; returns its path."""
    dst = os.path.join(ctx.outdir, "video_p2p", name)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def zero(path):
    open(path, "wb").close()


def foreign(path):
    import safetensors.torch
    import torch
    safetensors.torch.save_file({"lora_up.weight": torch.zeros(2, 2)}, path, metadata={"ss_network_dim": "4"})


def damaged(kind, make_prompt, source, damage, later=False):
    """A prompt loading a copy of a real file broken by `damage`, before validation or (later)
    between validation and execution (the prompt was queued, then the file broke)."""
    def build(ctx):
        name = f"{kind}.safetensors"
        path = store_copy(ctx, getattr(ctx, source), name)
        if not later:
            damage(path)
            return make_prompt(ctx, name)
        return make_prompt(ctx, name), lambda: damage(path)
    return build


TUNING_DAMAGED = ("Load Video Tuning: the tuning file 'broken.safetensors' is damaged: it is cut short or not a "
                  "safetensors file (… bytes; …). Delete it and run Tune On Video with a save_name again, or copy "
                  "the file again from where it came from.")
INVERSION_DAMAGED = ("Load Inversion (VP2P): the inversion file 'broken.safetensors' is damaged: it is cut short or "
                     "not a safetensors file (… bytes; …). Delete it and save one with Save Inversion (VP2P) again, "
                     "or copy the file again from where it came from.")

CASES = [
    # ----------------------------------------------------------------- saved tunings
    Case("tuning-truncated", "Load Video Tuning", "a saved tuning cut short (disk full, interrupted copy)", "queue",
         TUNING_DAMAGED, damaged("broken", load_tuning, "tuning", truncate)),
    Case("tuning-empty", "Load Video Tuning", "a saved tuning of 0 bytes", "queue",
         "Load Video Tuning: the tuning file 'empty.safetensors' is damaged: it is empty (0 bytes). Delete it and run "
         "Tune On Video with a save_name again, or copy the file again from where it came from.",
         damaged("empty", load_tuning, "tuning", zero)),
    Case("tuning-foreign", "Load Video Tuning", "a safetensors file that is not a Video-P2P tuning (e.g. a LoRA) "
         "in output/video_p2p/", "queue",
         "Load Video Tuning: 'lora.safetensors' is not a Video-P2P tuning file (without the pack's format tag): "
         "choose another, or run Tune On Video with a save_name first.",
         damaged("lora", load_tuning, "tuning", foreign)),
    Case("tuning-inversion", "Load Video Tuning", "an inversion file named as the tuning", "queue",
         "Load Video Tuning: 'inv.safetensors' is not a Video-P2P tuning file (a vp2p-inversion file): choose "
         "another, or run Tune On Video with a save_name first.",
         lambda ctx: load_tuning(ctx, os.path.basename(store_copy(ctx, ctx.inversion, "inv.safetensors")))),
    Case("tuning-missing", "Load Video Tuning", "a workflow naming a tuning that is not there", "queue",
         "Load Video Tuning: tuning file 'gone.safetensors' not found in output/video_p2p/ or models/video_p2p/; "
         "run Tune On Video with a save_name first.", lambda ctx: load_tuning(ctx, "gone.safetensors")),
    Case("tuning-truncated-after-queue", "Load Video Tuning", "the tuning file is cut short after the prompt was "
         "queued", "run", TUNING_DAMAGED, damaged("broken", load_tuning, "tuning", truncate, later=True)),
    Case("tuning-empty-after-queue", "Load Video Tuning", "the tuning file is emptied after the prompt was queued",
         "run", "Load Video Tuning: the tuning file 'broken.safetensors' is damaged: it is empty (0 bytes). Delete it "
         "and run Tune On Video with a save_name again, or copy the file again from where it came from.",
         damaged("broken", load_tuning, "tuning", zero, later=True)),
    Case("tuning-foreign-after-queue", "Load Video Tuning", "the tuning file is replaced by another safetensors "
         "file after the prompt was queued", "run",
         "Load Video Tuning: 'broken.safetensors' is not a Video-P2P tuning file (without the pack's format tag): "
         "choose another, or run Tune On Video with a save_name first.",
         damaged("broken", load_tuning, "tuning", foreign, later=True)),
    # ----------------------------------------------------------------- saved inversions
    Case("inversion-truncated", "Load Inversion (VP2P)", "a saved inversion cut short", "queue",
         INVERSION_DAMAGED, damaged("broken", load_inversion, "inversion", truncate)),
    Case("inversion-empty", "Load Inversion (VP2P)", "a saved inversion of 0 bytes", "queue",
         "Load Inversion (VP2P): the inversion file 'empty.safetensors' is damaged: it is empty (0 bytes). Delete it "
         "and save one with Save Inversion (VP2P) again, or copy the file again from where it came from.",
         damaged("empty", load_inversion, "inversion", zero)),
    Case("inversion-foreign", "Load Inversion (VP2P)", "a safetensors file that is not a Video-P2P inversion",
         "queue", "Load Inversion (VP2P): 'lora.safetensors' is not a Video-P2P inversion file (without the pack's "
         "format tag): choose another, or save one with Save Inversion (VP2P) first.",
         damaged("lora", load_inversion, "inversion", foreign)),
    Case("inversion-tuning", "Load Inversion (VP2P)", "a tuning file named as the inversion", "queue",
         "Load Inversion (VP2P): 'tun.safetensors' is not a Video-P2P inversion file (a vp2p-tuning file): choose "
         "another, or save one with Save Inversion (VP2P) first.",
         lambda ctx: load_inversion(ctx, os.path.basename(store_copy(ctx, ctx.tuning, "tun.safetensors")))),
    Case("inversion-missing", "Load Inversion (VP2P)", "a workflow naming an inversion that is not there", "queue",
         "Load Inversion (VP2P): inversion file 'gone.safetensors' not found in output/video_p2p/ or "
         "models/video_p2p/; save one with Save Inversion (VP2P) first.",
         lambda ctx: load_inversion(ctx, "gone.safetensors")),
    Case("inversion-truncated-after-queue", "Load Inversion (VP2P)", "the inversion file is cut short after the "
         "prompt was queued", "run", INVERSION_DAMAGED,
         damaged("broken", load_inversion, "inversion", truncate, later=True)),
    # ----------------------------------------------------------------- where files are written
    Case("save-video-absolute", "Save Video (VP2P)", "filename_prefix is a full path", "queue",
         "Save Video (VP2P): filename_prefix '/tmp/edit' is a full path; files are saved under ComfyUI's output "
         "folder only: use a relative prefix such as 'video_p2p/edit'.", lambda ctx: save_video(ctx, "/tmp/edit")),
    Case("save-video-outside", "Save Video (VP2P)", "filename_prefix climbs out of the output folder ('..')",
         "queue", "Save Video (VP2P): filename_prefix '../../edit' points outside ComfyUI's output folder ('..'): "
         "use a relative prefix such as 'video_p2p/edit'.", lambda ctx: save_video(ctx, "../../edit")),
    Case("save-inversion-absolute", "Save Inversion (VP2P)", "filename_prefix is a full path", "queue",
         "Save Inversion (VP2P): filename_prefix '/tmp/inv' is a full path; files are saved under ComfyUI's output "
         "folder only: use a relative prefix such as 'inversion'.",
         lambda ctx: dict(load_inversion(ctx, os.path.basename(store_copy(ctx, ctx.inversion, "i.safetensors"))),
                          **{"9": {"class_type": "VP2PSaveInversion", "inputs": {
                              "inversion": ["8", 0], "filename_prefix": "/tmp/inv"}}})),
    Case("tune-save-outside", "Tune On Video", "save_name climbs out of the output folder", "queue",
         "Tune On Video: save_name '../../../tuned' points outside ComfyUI's output folder ('..'): use a "
         "relative prefix such as 'tuning'.", lambda ctx: tune(ctx, "../../../tuned")),
    # ----------------------------------------------------------------- P2P Controller
    Case("controller-swap-lengths", "P2P Controller", "mode swap with prompts of different word counts", "run",
         "P2P Controller: swap needs the same number of words in both prompts (3 vs 4: 'a red circle' / 'a big red "
         "circle'); use mode 'refine' to add or remove words.",
         lambda ctx: controller(ctx, "a red circle", "a big red circle")),
    Case("controller-reweight-unknown", "P2P Controller", "reweight_words names a word of neither prompt", "run",
         "P2P Controller: reweight word 'zebra' is not in the prompt 'a red circle'.",
         lambda ctx: controller(ctx, "a red circle", "a red circle", mode="reweight", reweight_words="zebra")),
    Case("controller-reweight-scales", "P2P Controller", "more reweight_scales than reweight_words", "run",
         "P2P Controller: 3 reweight scales for 2 reweight words: give one scale, or one per word.",
         lambda ctx: controller(ctx, "a red circle", "a red circle", mode="reweight", reweight_words="red, circle",
                                reweight_scales="1, 2, 3")),
    Case("controller-blend-unknown", "P2P Controller", "blend_words names a word of neither prompt", "run",
         "P2P Controller: blend word(s) ['square'] appear in neither prompt; use words of the prompts.",
         lambda ctx: controller(ctx, "a red circle", "a blue circle", blend_words="square")),
    Case("controller-blend-threshold-1", "P2P Controller", "blend_threshold 1 with blend_words", "run",
         "P2P Controller: blend_threshold 1 masks nothing (the blend words' attention is scaled to a maximum of 1 "
         "and must exceed the threshold), so every frame would stay the source: use a value below 1 (the "
         "reference's is 0.3), or clear blend_words for no blend.",
         lambda ctx: controller(ctx, "a red circle", "a blue circle", blend_words="circle", blend_threshold=1.0)),
    Case("controller-combo", "P2P Controller", "a combo value the node does not offer (e.g. edited in an API "
         "prompt)", "queue", "P2P Controller: controlled_layers must be one of cross+temporal (paper), cross+temporal+frame, cross "
         "only, cross+frame (got 'cross+temporal')",
         lambda ctx: controller(ctx, "a red circle", "a blue circle", controlled_layers="cross+temporal")),
    # ----------------------------------------------------------------- Load Video
    Case("video-missing", "Load Video (VP2P)", "path names a file that does not exist", "run",
         "Load Video (VP2P): '…nope.mp4' does not exist: check the path (videos are looked up in ComfyUI's input "
         "folder).", lambda ctx: load_video(ctx, path=os.path.join(ctx.tmp, "nope.mp4"))),
    Case("video-none", "Load Video (VP2P)", "no video chosen, no path, nothing connected", "run",
         "Load Video (VP2P): choose or upload a video (video), give a path, or connect a VIDEO to video_input.",
         lambda ctx: load_video(ctx)),
    Case("video-corrupt", "Load Video (VP2P)", "a file that is not a video", "run",
         "Load Video (VP2P): 'bad.mp4': cannot open it as a video (…); the file is corrupt or not a video.",
         lambda ctx: load_video(ctx, path=_write(os.path.join(ctx.tmp, "bad.mp4"), b"not a video at all"))),
    Case("video-past-end", "Load Video (VP2P)", "frame_start past the last frame", "run",
         "Load Video (VP2P): 'short.mp4': no frames in the range: frame_start 50 is past the end (6 frames).",
         lambda ctx: load_video(ctx, path=ctx.clip(os.path.join(ctx.tmp, "short.mp4")), frame_start=50)),
    Case("video-empty-folder", "Load Video (VP2P)", "path is a folder without images", "run",
         "Load Video (VP2P): 'empty': the folder '…empty' has no images (.png, .jpg, .jpeg, .webp, .bmp).",
         lambda ctx: load_video(ctx, path=_mkdir(os.path.join(ctx.tmp, "empty")))),
    Case("clips-not-folder", "Load Video (VP2P)", "clip_folder is not a folder", "run",
         "Load Video (VP2P): clip_folder 'no_such_clips' is not a folder: give a folder of clips, relative to "
         "ComfyUI's input folder or a full path (or leave it empty to load video / path).",
         lambda ctx: load_video(ctx, clip_folder="no_such_clips", clip_index=0)),
    Case("clips-none", "Load Video (VP2P)", "clip_folder has no clips", "run",
         "Load Video (VP2P): clip_folder 'notes' has no clips (video files .mp4, .mov, .avi, .mkv, .webm, .gif, "
         ".m4v or folders of images).",
         lambda ctx: load_video(ctx, clip_folder=_mkdir(os.path.join(ctx.indir, "notes"), "notes"), clip_index=0)),
    Case("clips-past-end", "Load Video (VP2P)", "clip_index past the last clip (e.g. Queue 5 on 3 clips)", "run",
         "Load Video (VP2P): clip_index 3 is past the last clip of 'clips' (3 clips, index 0 to 2): set clip_index "
         "back to 0 (Queue 3 with 'increment' edits each clip once).",
         lambda ctx: load_video(ctx, clip_folder=_clips(ctx, 3), clip_index=3)),
]


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def _mkdir(path, name=None):
    os.makedirs(path, exist_ok=True)
    return name or path


def _clips(ctx, n):
    folder = os.path.join(ctx.indir, "clips")
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        ctx.clip(os.path.join(folder, f"clip_{i}.mp4"), frames=2)
    return "clips"


# --------------------------------------------------------------------------- the page
def render() -> str:
    lines = ["# Error messages", "",
             "Every bad input the pack's error-table tests try (`vp2p_dev/error_cases.py`, run through ComfyUI's real "
             "validation and executor on both supported ComfyUI versions), with the message you then read. "
             "**Queue**: ComfyUI refuses the prompt before anything runs (the node is outlined in red); **run**: "
             "the node fails while the prompt runs. '…' stands for a part that varies (a folder, a size, a "
             "library's wording). Search this page for the words of the message you got.", "",
             "Generated by `python -m vp2p_dev.error_cases`; do not edit by hand.", "",
             "| node | what you did | when | the message |", "|---|---|---|---|"]
    for c in CASES:
        cells = [c.node, c.does, c.when, c.expect]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(render())
    print(f"wrote {DOC} ({len(CASES)} cases)")
