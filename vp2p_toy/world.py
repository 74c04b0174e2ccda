"""A procedural toy world with known truth: one or two flat-coloured objects (circle, square
or triangle), each moving, growing and turning smoothly over a textured background. Small enough to train a latent
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


def caption(colour, shape, background, background_colour, second=None):
    """The world's caption; `second` = (colour, shape) of a second object, named after the first."""
    thing = f"{colour} {shape}" if second is None else f"{colour} {shape} and a {second[0]} {second[1]}"
    return f"a {thing} on a {background} {background_colour} background"


def _fields(cls, d, what):
    """A JSON dict as dataclass fields (lists back to tuples); unknown keys are an error."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"toy world: unknown {what} {sorted(unknown)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


@dataclasses.dataclass
class ObjectSpec:
    """The second object of a two-object world (the first one's fields are WorldSpec's own)."""
    shape: str = "square"
    colour: str = "blue"
    start: tuple = (0.7, 0.3)
    end: tuple = (0.7, 0.3)
    scale: tuple = (0.15, 0.15)
    rotation: tuple = (0.0, 0.0)

    @classmethod
    def from_dict(cls, d):
        return cls(**_fields(cls, d, "keys of the second object"))


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
    second: ObjectSpec | None = None  # a second object, drawn over the first

    def check(self):
        checks = [("shape", self.shape, SHAPES), ("colour", self.colour, COLOURS),
                  ("background", self.background, BACKGROUNDS), ("background_colour", self.background_colour, BG_COLOURS)]
        if self.second is not None:
            if isinstance(self.second, dict):
                self.second = ObjectSpec.from_dict(self.second)
            checks += [("second shape", self.second.shape, SHAPES), ("second colour", self.second.colour, COLOURS)]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"toy world: unknown {name} {value!r}; choose one of {list(allowed)}")
        if not 1 <= int(self.frames) <= 256:
            raise ValueError("toy world: frames must be in 1..256")
        if int(self.size) % 8:
            raise ValueError("toy world: size must be a multiple of 8")
        return self

    @property
    def caption(self):
        second = None if self.second is None else (self.second.colour, self.second.shape)
        return caption(self.colour, self.shape, self.background, self.background_colour, second)

    def objects(self):
        """[ObjectSpec] of every object, the first one first."""
        first = ObjectSpec(self.shape, self.colour, tuple(self.start), tuple(self.end), tuple(self.scale),
                           tuple(self.rotation))
        return [first] + ([self.second] if self.second is not None else [])

    def to_dict(self):
        d = dataclasses.asdict(self)
        if d["second"] is None:
            del d["second"]          # single-object specs keep their old JSON
        return d

    @classmethod
    def from_dict(cls, d):
        d = _fields(cls, d, "spec keys")
        if d.get("second") is not None:
            d["second"] = ObjectSpec.from_dict(d["second"])
        return cls(**d).check()

    def with_object(self, colour=None, shape=None):
        return dataclasses.replace(self, colour=colour or self.colour, shape=shape or self.shape)

    def with_second(self, colour=None, shape=None):
        o = self.second
        return dataclasses.replace(self, second=dataclasses.replace(o, colour=colour or o.colour,
                                                                    shape=shape or o.shape))


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
    """-> frames uint8 [F,H,W,3], truth dict: masks [F,H,W] float 0..1, centres [F,2] px,
    radius [F] px, colour, shape of the first object; `objects`, the same per object (masks
    are the visible coverage: the second object is drawn over the first); caption, background."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    size = int(spec.size)
    bg = background(spec.background, spec.background_colour, size, rng)
    objs = spec.objects()
    n = int(spec.frames)
    frames = []
    per = [{"masks": [], "centres": [], "radius": [], "colour": o.colour, "shape": o.shape} for o in objs]
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        img = bg.copy()
        cover = []
        for o, rec in zip(objs, per):
            c = _lerp(tuple(o.start), tuple(o.end), t)
            r = _lerp(o.scale[0], o.scale[1], t)
            m = object_mask(o.shape, c, r, _lerp(o.rotation[0], o.rotation[1], t), size)
            img = img * (1 - m[..., None]) + np.array(COLOURS[o.colour], np.float32) * m[..., None]
            cover = [v * (1 - m) for v in cover] + [m]
            rec["centres"].append((c[0] * size, c[1] * size))
            rec["radius"].append(r * size)
        for rec, m in zip(per, cover):
            rec["masks"].append(m)
        frames.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    for rec in per:
        rec["masks"] = np.stack(rec["masks"])
        rec["centres"] = np.array(rec["centres"], np.float32)
        rec["radius"] = np.array(rec["radius"])
    truth = dict(per[0], objects=per, caption=spec.caption, background=bg)
    return np.stack(frames), truth


def random_spec(rng, frames=1, size=SIZE, motion=True, objects=1, turn=False):
    """A random spec (training data and tests): any object(s), background, position and motion.
    Two objects are smaller and never overlap along their paths. `turn`: each object also turns,
    from a random angle by up to 90 degrees either way over the clip (drawn after everything
    else, so the other fields are those of the same rng without it)."""
    if objects == 2:
        return _turned(_random_pair(rng, frames, size, motion), rng) if turn else _random_pair(rng, frames, size, motion)
    if turn:
        return _turned(random_spec(rng, frames, size, motion, objects), rng)
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


def _random_pair(rng, frames, size, motion):
    def path(r):
        start = rng.uniform(r + 0.02, 1 - r - 0.02, 2)
        end = np.clip(start + rng.uniform(-0.25, 0.25, 2), r + 0.02, 1 - r - 0.02) if motion else start
        return start, end
    while True:
        r = rng.uniform(0.11, 0.17, 2)
        (s0, e0), (s1, e1) = path(r[0]), path(r[1])
        gap = min(np.linalg.norm((s0 + (e0 - s0) * t) - (s1 + (e1 - s1) * t)) for t in np.linspace(0, 1, 9))
        if gap > r.sum() * 1.25 + 0.04:   # the triangle reaches 1.25 r from its centre
            break
    (c0, c1), (k0, k1) = rng.choice(list(COLOURS), 2, replace=False), rng.choice(SHAPES, 2)
    second = ObjectSpec(shape=str(k1), colour=str(c1), start=tuple(float(v) for v in s1), end=tuple(float(v) for v in e1),
                        scale=(float(r[1]), float(r[1])))
    return WorldSpec(shape=str(k0), colour=str(c0), background=str(rng.choice(BACKGROUNDS)),
                     background_colour=str(rng.choice(list(BG_COLOURS))), frames=frames, size=size,
                     start=tuple(float(v) for v in s0), end=tuple(float(v) for v in e0),
                     scale=(float(r[0]), float(r[0])), seed=int(rng.integers(0, 2 ** 31)), second=second)


def _turned(spec, rng):
    a0, da = rng.uniform(0, 120), rng.uniform(-90, 90)
    spec = dataclasses.replace(spec, rotation=(float(a0), float(a0 + da)))
    if spec.second is not None:
        a0, da = rng.uniform(0, 120), rng.uniform(-90, 90)
        spec.second = dataclasses.replace(spec.second, rotation=(float(a0), float(a0 + da)))
    return spec


def spec_json(spec: WorldSpec) -> str:
    return json.dumps(spec.to_dict())
