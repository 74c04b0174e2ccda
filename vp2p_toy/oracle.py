"""Pixel oracles for the toy world: what object is in a frame, where, and how well a video
keeps its background and motion. They only look at pixels (uint8 RGB), so they judge
generated and edited videos exactly like rendered ones."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .world import COLOURS

_PALETTE = np.array(list(COLOURS.values()), np.float32)
_NAMES = list(COLOURS)
OBJECT_DISTANCE = 85.0     # RGB distance to an object colour for a pixel to count as object


def _as_uint8(img):
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img * 255.0 if img.max() <= 1.0 + 1e-6 else img), 0, 255).astype(np.uint8)
    return img


def object_mask(img) -> np.ndarray:
    """Bool [H,W]: the largest connected region of object-palette colours."""
    img = _as_uint8(img).astype(np.float32)
    d = np.linalg.norm(img[:, :, None, :] - _PALETTE[None, None], axis=-1).min(-1)
    cand = (d < OBJECT_DISTANCE).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=4)
    if n <= 1:
        return np.zeros(cand.shape, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def _template(shape, cx, cy, area, angle, size):
    """Coverage [H,W] of an ideal shape with the object's centroid and area."""
    k = 4
    big = np.zeros((size[0] * k, size[1] * k), np.uint8)
    if shape == "circle":
        r = math.sqrt(area / math.pi)
        cv2.circle(big, (int(round(cx * k)), int(round(cy * k))), int(round(r * k)), 255, -1, cv2.LINE_AA)
    else:
        n = 4 if shape == "square" else 3
        # circumradius for the given area; polygon centroid == circumcentre for regular polygons
        rr = math.sqrt(2 * area / (n * math.sin(2 * math.pi / n)))
        pts = [((cx + rr * math.cos(angle + 2 * math.pi * i / n)) * k, (cy + rr * math.sin(angle + 2 * math.pi * i / n)) * k)
               for i in range(n)]
        cv2.fillPoly(big, [np.round(np.array(pts)).astype(np.int32)], 255, cv2.LINE_AA)
    return cv2.resize(big, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def shape_of(mask):
    """Best-matching ideal shape (circle / square / triangle at any rotation, same centroid and
    area) by intersection-over-union. Template matching tolerates the blur and rounded corners
    of decoded images, which hand-made contour features do not."""
    m = np.asarray(mask, np.float32)
    ys, xs = np.nonzero(m)
    cx, cy, area = xs.mean() + 0.5, ys.mean() + 0.5, float(m.sum())
    scores = {}
    for shape, period in (("circle", None), ("square", math.pi / 2), ("triangle", 2 * math.pi / 3)):
        best = 0.0
        for ang in ([0.0] if period is None else np.arange(0, period, period / 12)):
            t = _template(shape, cx, cy, area, ang, m.shape)
            best = max(best, float(np.minimum(t, m).sum() / max(np.maximum(t, m).sum(), 1e-6)))
        scores[shape] = best
    return max(scores, key=scores.get), scores


def classify(img) -> dict:
    """{'colour', 'shape', 'centre' (x, y px), 'area' px, 'fill'} of the main object, or
    colour/shape None when no object is visible."""
    img8 = _as_uint8(img)
    m = object_mask(img8)
    area = int(m.sum())
    if area < 12:
        return {"colour": None, "shape": None, "centre": None, "area": area, "scores": None}
    pix = img8[m].astype(np.float32)
    med = np.median(pix, axis=0)
    colour = _NAMES[int(np.linalg.norm(_PALETTE - med, axis=1).argmin())]
    shape, scores = shape_of(m)
    ys, xs = np.nonzero(m)
    return {"colour": colour, "shape": shape, "centre": (float(xs.mean()), float(ys.mean())), "area": area,
            "scores": scores}


def classify_video(frames) -> list:
    return [classify(f) for f in frames]


def psnr(a, b, mask=None) -> float:
    """PSNR (dB, peak 255) of two uint8 images, optionally only where mask is True."""
    a = _as_uint8(a).astype(np.float64)
    b = _as_uint8(b).astype(np.float64)
    d = (a - b) ** 2
    if mask is not None:
        m = np.asarray(mask, bool)
        if not m.any():
            return float("nan")
        d = d[m]
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def dilate(mask, px=3) -> np.ndarray:
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.dilate(np.asarray(mask, np.uint8), k) > 0


def background_mask(*mask_sets, px=3):
    """[F,H,W] bool: outside every given (dilated) object mask of each frame."""
    out = None
    for masks in mask_sets:
        bad = np.stack([dilate(np.asarray(m) > 0.02, px) for m in masks])
        out = bad if out is None else out | bad
    return ~out


def background_psnr(video, reference, bg) -> float:
    """PSNR over all frames' background pixels (bg: [F,H,W] bool)."""
    v = np.stack([_as_uint8(f) for f in video])
    r = np.stack([_as_uint8(f) for f in reference])
    return psnr(v, r, bg)


def flicker(video, bg) -> float:
    """Mean absolute frame-to-frame change (0..255) where the background should be static:
    outside the object in both frames of each pair. The toy world's background never moves,
    so all of it is flicker."""
    v = np.stack([_as_uint8(f) for f in video]).astype(np.float32)
    if len(v) < 2:
        return 0.0
    diffs = []
    for t in range(len(v) - 1):
        m = bg[t] & bg[t + 1]
        if m.any():
            diffs.append(np.abs(v[t + 1] - v[t])[m].mean())
    return float(np.mean(diffs)) if diffs else float("nan")


def track_error(video, centres) -> float:
    """Mean distance (px) between the detected object centre and the known one."""
    errs = []
    for f, c in zip(video, centres):
        got = classify(f)["centre"]
        errs.append(float("nan") if got is None else math.dist(got, c))
    return float(np.nanmean(errs)) if not all(math.isnan(e) for e in errs) else float("nan")
