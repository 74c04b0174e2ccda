"""A procedural toy world with known truth: one flat-coloured object (circle, square or
triangle) moving smoothly over a textured background. Small enough to train a latent
diffusion model on CPU, rich enough to measure colour/shape edits, background preservation
and flicker from pixels alone.

Object colours and background colours come from disjoint palettes, so an object pixel is
recognisable by colour; every caption word that can be swapped is one CLIP token.
"""
from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 60, 230), "yellow": (235, 215, 20),
           "purple": (150, 40, 200), "orange": (245, 130, 10)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("striped", "checkered", "noisy", "gradient")
BG_COLOURS = {"gray": (128, 128, 128), "brown": (120, 85, 55), "pink": (235, 170, 190), "teal": (40, 130, 130)}
SIZE = 64


def caption(colour, shape, background, background_colour):
    return f"a {colour} {shape} on a {background} {background_colour} background"


@dataclasses.dataclass
class WorldSpec:
    """A video of the toy world; every field is JSON-able (benchmark case files use it)."""
    shape: str = "circle"
    colour: str = "red"
    background: str = "striped"
    background_colour: str = "gray"
    frames: int = 8
    size: int = SIZE
    start: tuple = (0.3, 0.5)        # object centre at the first frame (fractions of the size)
    end: tuple = (0.7, 0.5)          # ... and at the last frame (linear motion)
    scale: tuple = (0.22, 0.22)      # object radius as a fraction of the size, first -> last frame
    rotation: tuple = (0.0, 0.0)     # degrees, first -> last frame
    seed: int = 0                    # background texture

    def check(self):
        for name, value, allowed in (("shape", self.shape, SHAPES), ("colour", self.colour, COLOURS),
                                     ("background", self.background, BACKGROUNDS),
                                     ("background_colour", self.background_colour, BG_COLOURS)):
            if value not in allowed:
                raise ValueError(f"toy world: unknown {name} {value!r}; choose one of {list(allowed)}")
        if not 1 <= int(self.frames) <= 256:
            raise ValueError("toy world: frames must be in 1..256")
        if int(self.size) % 8:
            raise ValueError("toy world: size must be a multiple of 8")
        return self

    @property
    def caption(self):
        return caption(self.colour, self.shape, self.background, self.background_colour)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"toy world: unknown spec keys {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d).check()

    def with_object(self, colour=None, shape=None):
        return dataclasses.replace(self, colour=colour or self.colour, shape=shape or self.shape)


def background(kind, colour, size, rng):
    """Textured background, float32 [H,W,3] in 0..255."""
    base = np.array(BG_COLOURS[colour], np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "striped":
        period = rng.uniform(8, 14)
        angle = rng.uniform(0, math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        m = (np.floor(t) % 2)[..., None]
        img = base * (0.7 + 0.3 * m) + 25 * m
    elif kind == "checkered":
        cell = int(rng.integers(8, 14))
        off = rng.integers(0, cell, 2)
        m = (((xx + off[0]) // cell + (yy + off[1]) // cell) % 2)[..., None]
        img = base * (0.75 + 0.25 * m) + 20 * m
    elif kind == "noisy":
        small = rng.normal(0, 1, (size // 8, size // 8)).astype(np.float32)
        n = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
        img = base * (1.0 + 0.18 * n)
    else:  # gradient
        angle = rng.uniform(0, 2 * math.pi)
        t = ((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)) / size
        img = base * (1.0 + 0.6 * t[..., None])
    return np.clip(img, 0, 255).astype(np.float32)


def object_mask(shape, centre, radius, angle_deg, size):
    """Anti-aliased coverage [H,W] in 0..1, drawn at 4x and downsampled."""
    k = 4
    big = np.zeros((size * k, size * k), np.uint8)
    cx, cy, r = centre[0] * size * k, centre[1] * size * k, radius * size * k
    a = math.radians(angle_deg)
    if shape == "circle":
        cv2.circle(big, (int(round(cx)), int(round(cy))), int(round(r)), 255, -1, cv2.LINE_AA)
    else:
        n, rr, phase = (4, r * math.sqrt(2) * 0.9, math.pi / 4) if shape == "square" else (3, r * 1.25, -math.pi / 2)
        pts = [(cx + rr * math.cos(phase + a + 2 * math.pi * i / n), cy + rr * math.sin(phase + a + 2 * math.pi * i / n))
               for i in range(n)]
        if shape == "triangle":   # centre the triangle's bounding box on the centre
            ys = [p[1] for p in pts]
            dy = cy - (min(ys) + max(ys)) / 2
            pts = [(x, y + dy) for x, y in pts]
        cv2.fillPoly(big, [np.round(np.array(pts)).astype(np.int32)], 255, cv2.LINE_AA)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _lerp(a, b, t):
    return tuple(x + (y - x) * t for x, y in zip(a, b)) if isinstance(a, (tuple, list)) else a + (b - a) * t


def render(spec: WorldSpec):
    """-> frames uint8 [F,H,W,3], truth dict (masks [F,H,W] float 0..1, centres [F,2] px,
    radius [F] px, colour, shape, caption)."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    size = int(spec.size)
    bg = background(spec.background, spec.background_colour, size, rng)
    col = np.array(COLOURS[spec.colour], np.float32)
    frames, masks, centres, radii = [], [], [], []
    n = int(spec.frames)
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        c = _lerp(tuple(spec.start), tuple(spec.end), t)
        r = _lerp(spec.scale[0], spec.scale[1], t)
        ang = _lerp(spec.rotation[0], spec.rotation[1], t)
        m = object_mask(spec.shape, c, r, ang, size)
        img = bg * (1 - m[..., None]) + col * m[..., None]
        frames.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
        masks.append(m)
        centres.append((c[0] * size, c[1] * size))
        radii.append(r * size)
    truth = {"masks": np.stack(masks), "centres": np.array(centres, np.float32), "radius": np.array(radii),
             "colour": spec.colour, "shape": spec.shape, "caption": spec.caption, "background": bg}
    return np.stack(frames), truth


def random_spec(rng, frames=1, size=SIZE, motion=True):
    """A random spec (training data and tests): any object, background, position and motion."""
    r0 = rng.uniform(0.14, 0.26)
    start = tuple(rng.uniform(r0 + 0.02, 1 - r0 - 0.02, 2))
    if motion:
        end = tuple(np.clip(np.array(start) + rng.uniform(-0.3, 0.3, 2), r0 + 0.02, 1 - r0 - 0.02))
        r1 = float(np.clip(r0 * rng.uniform(0.85, 1.15), 0.12, 0.28))
    else:
        end, r1 = start, r0
    return WorldSpec(shape=str(rng.choice(SHAPES)), colour=str(rng.choice(list(COLOURS))),
                     background=str(rng.choice(BACKGROUNDS)), background_colour=str(rng.choice(list(BG_COLOURS))),
                     frames=frames, size=size, start=tuple(float(v) for v in start),
                     end=tuple(float(v) for v in end), scale=(float(r0), r1), seed=int(rng.integers(0, 2 ** 31)))


def spec_json(spec: WorldSpec) -> str:
    return json.dumps(spec.to_dict())
