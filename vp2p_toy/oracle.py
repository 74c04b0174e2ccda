"""Pixel oracles for the toy world: what object is in a frame, where, and how well a video
keeps its background and motion. They only look at pixels (uint8 RGB), so they judge
generated and edited videos exactly like rendered ones."""
from __future__ import annotations

import math
from collections import Counter

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


# Radial-harmonic thresholds (relative amplitudes of the 3rd / 4th harmonic of the boundary's
# distance from the centroid). Ideal renders give ~0.27 (triangle) / ~0.14 (square) / <0.01
# (circle); the toy autoencoder rounds corners, so the thresholds sit between circles and the
# rounded shapes of encode/decode round trips of rendered truth (set on 300 decoded renders,
# checked on 300 others: tests/test_toy_world.py and the model card).
TRIANGLE_A3, SQUARE_A4 = 0.08, 0.065
_IDEAL = {3: 0.27, 4: 0.139}


def radial_harmonics(mask, bins=256) -> dict:
    """{k: 2|c_k|/c_0} of the outer boundary's radius r(theta) around the centroid, k = 1..8."""
    m = np.asarray(mask, np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float64) + 0.5
    ys, xs = np.nonzero(m)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    theta = np.arctan2(c[:, 1] - cy, c[:, 0] - cx)
    radius = np.hypot(c[:, 0] - cx, c[:, 1] - cy)
    order = np.argsort(theta)
    grid = np.linspace(-math.pi, math.pi, bins, endpoint=False)
    r = np.interp(grid, theta[order], radius[order], period=2 * math.pi)
    f = np.fft.rfft(r) / bins
    return {k: float(2 * abs(f[k]) / abs(f[0])) for k in range(1, 9)}


def shape_of(mask):
    """Circle / square / triangle from the 3- and 4-fold symmetry of the outline. Unlike
    template IoU (which favours the circle once corners are rounded), the symmetry of a
    rounded square or triangle survives the blur of an 8x autoencoder."""
    h = radial_harmonics(mask)
    a3, a4 = h[3], h[4]
    if a3 < TRIANGLE_A3 and a4 < SQUARE_A4:
        shape = "circle"
    elif a3 >= TRIANGLE_A3 and (a4 < SQUARE_A4 or a3 / _IDEAL[3] >= a4 / _IDEAL[4]):
        shape = "triangle"
    else:
        shape = "square"
    return shape, {"a3": a3, "a4": a4}


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


MIN_AREA = 12              # px: smaller regions are no object (classify's threshold)
_CORE_KERNEL = np.ones((3, 3), np.uint8)


def _palette_labels(img8):
    """(bool [H,W] object-colour candidates, int [H,W] nearest palette colour index)."""
    d = np.linalg.norm(img8.astype(np.float32)[:, :, None, :] - _PALETTE[None, None], axis=-1)
    return d.min(-1) < OBJECT_DISTANCE, d.argmin(-1)


def _split_by_colour(region, labels):
    """Split one connected candidate region into one region per colour that has a core (a
    3x3 erosion survives): two touching objects of different colours come apart, while the
    thin anti-aliased fringe (e.g. blue over pink blends to purple) stays with its object.
    Fringe pixels go to the nearest core."""
    cores = []
    for lab in np.unique(labels[region]):
        core = cv2.erode((region & (labels == lab)).astype(np.uint8), _CORE_KERNEL) > 0
        if core.sum() >= 4:
            cores.append(core)
    if len(cores) <= 1:
        return [region]
    dist = np.stack([cv2.distanceTransform((~c).astype(np.uint8), cv2.DIST_L2, 3) for c in cores])
    owner = dist.argmin(0)
    out = []
    for i in range(len(cores)):
        part = (region & (owner == i)).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=4)
        out += [comp == j for j in range(1, n) if stats[j, cv2.CC_STAT_AREA] >= MIN_AREA]
    return out


def _describe(img8, m) -> dict:
    """classify()'s reading of one object region."""
    med = np.median(img8[m].astype(np.float32), axis=0)
    colour = _NAMES[int(np.linalg.norm(_PALETTE - med, axis=1).argmin())]
    shape, scores = shape_of(m)
    ys, xs = np.nonzero(m)
    return {"colour": colour, "shape": shape, "centre": (float(xs.mean()), float(ys.mean())), "area": int(m.sum()),
            "scores": scores, "mask": m}


def find_objects(img, k=2, region=None) -> list:
    """The up to k largest objects, by area descending: [{'colour', 'shape', 'centre' (x, y px),
    'area' px, 'scores', 'mask' bool [H,W]}]. Object-colour pixels (within OBJECT_DISTANCE of a
    palette colour) form connected regions (4-connectivity, >= MIN_AREA px, as in classify);
    a region that holds the cores of several palette colours is split by nearest colour.
    `region` (bool [H,W]): only look there (e.g. near one object's known position)."""
    img8 = _as_uint8(img)
    cand, labels = _palette_labels(img8)
    if region is not None:
        cand &= np.asarray(region, bool)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=4)
    parts = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] >= MIN_AREA:
            parts += _split_by_colour(comp == i, labels)
    parts.sort(key=lambda m: -int(m.sum()))
    return [_describe(img8, m) for m in parts[:k]]


def matches(objects, expected) -> bool:
    """True when the found objects' (colour, shape) are exactly the expected multiset."""
    return Counter((o["colour"], o["shape"]) for o in objects) == Counter(tuple(e) for e in expected)


def near(mask, radius=None, px=None) -> np.ndarray:
    """Bool [H,W]: one frame's truth mask of an object (coverage > 0.02) dilated by px, by
    default 2 + 0.3 * radius px: room for a square's corners or a triangle's tip where a circle
    of the same radius was (an edit that changes the shape)."""
    if px is None:
        px = 3 if radius is None else int(math.ceil(2 + 0.3 * float(radius)))
    return dilate(np.asarray(mask) > 0.02, px)


def read_near(img, mask, radius=None, px=None) -> dict:
    """The largest object near one object's known place (see near): find_objects' dict, or
    colour/shape None when nothing is there."""
    got = find_objects(img, 1, near(mask, radius, px))
    return got[0] if got else {"colour": None, "shape": None, "centre": None, "area": 0, "scores": None,
                               "mask": None}


def read_object(video, obj, px=None) -> list:
    """read_near for every frame of a video, at one object's truth (a render() truth dict or
    one of truth['objects'])."""
    return [read_near(f, m, r, px) for f, m, r in zip(video, obj["masks"], obj["radius"])]


def kept_object(video, source, obj, px=3) -> dict:
    """How well an edited video keeps an object that must not change: {'psnr': dB inside its
    truth mask (coverage > 0.5) against the source frames, 'rate': share of frames where the
    oracle near its truth mask (dilated px) reads its colour and shape}."""
    v = np.stack([_as_uint8(f) for f in video])
    s = np.stack([_as_uint8(f) for f in source])
    inside = np.asarray(obj["masks"]) > 0.5
    seen = read_object(v, obj, px)
    rate = sum((o["colour"], o["shape"]) == (obj["colour"], obj["shape"]) for o in seen) / len(seen)
    return {"psnr": psnr(v, s, inside), "rate": rate}


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


def frame_report(frames) -> list:
    """What the Toy World Oracle reports per uint8 frame [H,W,3]: the largest object's colour,
    shape and centre, and 'objects': the same for the two largest objects."""
    keys = ("colour", "shape", "centre")
    rows = []
    for f in frames:
        row = {k: v for k, v in classify(f).items() if k in keys}
        row["objects"] = [{k: o[k] for k in keys} for o in find_objects(f, k=2)]
        rows.append(row)
    return rows
