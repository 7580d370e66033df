"""The demo world: seeded procedural 64x64 scenes with captions and ground-truth labels.

A scene is a background and one to three objects, at most one of each kind. A cowboy hat may
sit on a cat's or a dog's head. Objects are drawn at 4x and downsampled, with a dark outline,
so that a person recognises them at 64x64 (a cat has pointed ears, eyes and whiskers; a hat has
a brim and a crown) on any background.

``render(scene) -> uint8 [64, 64, 3]``; ``sample_scene(rng)``; ``caption(scene, rng)``;
``labels(scene)`` gives the arrays the judge learns from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SS = 4  # supersampling factor while drawing
BACKGROUNDS = ("day", "night", "desert", "sea", "indoor", "snow")
KINDS = ("cat", "dog", "hat", "ball", "tree", "house", "sun", "car", "fish", "flower")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "black", "white")
SIZES = ("small", "medium", "large")
RGB = {
    "red": (214, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (250, 215, 50),
    "green": (60, 170, 70),
    "blue": (45, 95, 215),
    "purple": (140, 60, 180),
    "black": (35, 35, 40),
    "white": (245, 245, 245),
}
# Kinds whose colour is drawn from a natural subset.
ALLOWED_COLOURS = {
    "sun": ("yellow", "orange", "white"),
    "tree": ("green", "orange", "yellow", "red"),
}
VERSION = 1  # the shipped models are trained on this version (a tried version 2 is in the model card)
SCALE = {"small": 0.62, "medium": 0.8, "large": 1.0}
BASE = 26  # pixels (at 64x64) of a large object's bounding box side
NAMES = {"hat": "cowboy hat", "sun": "sun"}
OUTLINE = (20, 20, 24)


@dataclass
class Thing:
    kind: str
    colour: str
    size: str
    x: float  # centre, in [0, 1] of the image width
    y: float  # centre, in [0, 1] of the image height
    on: str | None = None  # a hat's wearer ("cat" or "dog")

    @property
    def extent(self) -> float:
        return BASE * SCALE[self.size] / SIZE


@dataclass
class Scene:
    background: str
    things: list[Thing] = field(default_factory=list)

    def kinds(self) -> set[str]:
        return {t.kind for t in self.things}

    def get(self, kind: str) -> Thing | None:
        return next((t for t in self.things if t.kind == kind), None)


# -- sampling ----------------------------------------------------------------------------------


def _overlaps(a: Thing, b: Thing) -> bool:
    return abs(a.x - b.x) < (a.extent + b.extent) * 0.45 and abs(a.y - b.y) < (a.extent + b.extent) * 0.45


def hat_on(wearer: Thing, colour: str) -> Thing:
    """A cowboy hat sitting on ``wearer``'s head (a cat's head is left of centre, a dog's further left)."""
    dx, dy = {"cat": (-0.125, -0.45), "dog": (-0.275, -0.41)}[wearer.kind]
    return Thing(
        "hat", colour, wearer.size, wearer.x + dx * wearer.extent, wearer.y + dy * wearer.extent, on=wearer.kind
    )


def sample_scene(
    rng: np.random.Generator,
    n_objects: int | None = None,
    background: str | None = None,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> Scene:
    """A random scene; ``include`` forces kinds in, ``exclude`` keeps kinds out."""
    bg = background or BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    n = n_objects or int(rng.integers(1, 4))
    n = max(n, len(include))
    if bg == "indoor":  # no sun or moon in a room
        exclude = (*exclude, "sun")
    pool = [k for k in KINDS if k not in exclude and k not in include]
    kinds = list(include) + list(rng.choice(pool, size=n - len(include), replace=False))
    scene = Scene(bg)
    hat_wearer = None
    if "hat" in kinds and rng.random() < 0.5:
        animals = [k for k in kinds if k in ("cat", "dog")]
        if animals:
            hat_wearer = animals[int(rng.integers(len(animals)))]
        elif len(kinds) < 3 and "cat" not in exclude and "dog" not in exclude:
            hat_wearer = "cat" if rng.random() < 0.5 else "dog"
            if hat_wearer in exclude:
                hat_wearer = None
            else:
                kinds.append(hat_wearer)
    for kind in sorted(kinds, key=lambda k: k == "hat"):  # hats last: they may sit on a head
        colours = ALLOWED_COLOURS.get(kind, COLOURS)
        colour = colours[int(rng.integers(len(colours)))]
        size = SIZES[int(rng.integers(3))]
        if kind == "hat" and hat_wearer:
            scene.things.append(hat_on(scene.get(hat_wearer), colour))
            continue
        for _ in range(50):
            t = Thing(kind, colour, size, float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.3, 0.8)))
            if kind == "sun":
                t.y = float(rng.uniform(0.15, 0.3))
            if kind in ("cat", "dog") and hat_wearer == kind:
                t.y = max(t.y, 0.45)
            if not any(_overlaps(t, o) for o in scene.things):
                break
        scene.things.append(t)
    return scene


# -- drawing -----------------------------------------------------------------------------------


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, v * f))) for v in c)


def _draw_background(d: ImageDraw.ImageDraw, bg: str, rng: np.random.Generator) -> None:
    W = SIZE * SS
    horizon = int(W * rng.uniform(0.55, 0.68))
    if bg == "day":
        d.rectangle([0, 0, W, horizon], fill=(130, 190, 245))
        d.rectangle([0, horizon, W, W], fill=(90, 175, 80))
        for _ in range(2):
            cx, cy = rng.uniform(0, W), rng.uniform(10, horizon * 0.5)
            for dx in (-14, 0, 14):
                d.ellipse([cx + dx - 16, cy - 10, cx + dx + 16, cy + 10], fill=(250, 250, 252))
    elif bg == "night":
        d.rectangle([0, 0, W, horizon], fill=(15, 20, 60))
        d.rectangle([0, horizon, W, W], fill=(25, 50, 35))
        for _ in range(14):
            x, y = rng.uniform(0, W), rng.uniform(0, horizon - 8)
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 220))
    elif bg == "desert":
        d.rectangle([0, 0, W, horizon], fill=(250, 225, 170))
        d.rectangle([0, horizon, W, W], fill=(225, 180, 100))
        for _ in range(2):
            cx = rng.uniform(0, W)
            d.ellipse([cx - 90, horizon - 22, cx + 90, horizon + 30], fill=(215, 165, 90))
    elif bg == "sea":
        d.rectangle([0, 0, W, horizon], fill=(170, 215, 250))
        d.rectangle([0, horizon, W, W], fill=(30, 90, 170))
        for y in range(horizon + 10, W, 18):
            for x in range(int(rng.uniform(-20, 0)), W, 40):
                d.arc([x, y - 6, x + 20, y + 6], 200, 340, fill=(200, 230, 255), width=3)
    elif bg == "indoor":
        d.rectangle([0, 0, W, horizon], fill=(205, 170, 150))
        for x in range(0, W, 24):
            d.rectangle([x, 0, x + 10, horizon], fill=(190, 150, 130))
        d.rectangle([0, horizon, W, W], fill=(130, 85, 50))
        for y in range(horizon + 12, W, 16):
            d.line([0, y, W, y], fill=(110, 70, 40), width=2)
    elif bg == "snow":
        d.rectangle([0, 0, W, horizon], fill=(200, 208, 220))
        d.rectangle([0, horizon, W, W], fill=(248, 250, 255))
        for _ in range(30):
            x, y = rng.uniform(0, W), rng.uniform(0, W)
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255))
    else:
        raise ValueError(f"unknown background {bg}")


def _box(t: Thing) -> tuple[float, float, float]:
    """Centre (px, py) and half-size r in supersampled pixels."""
    W = SIZE * SS
    return t.x * W, t.y * W, t.extent * W / 2


def _cat(d, t, c, o, lw):
    x, y, r = _box(t)
    d.ellipse([x - r * 0.75, y - r * 0.05, x + r * 0.75, y + r * 0.9], fill=c, outline=o, width=lw)  # body
    d.line([x + r * 0.6, y + r * 0.6, x + r * 1.0, y + r * 0.1], fill=o, width=lw * 3)  # tail
    d.line([x + r * 0.6, y + r * 0.6, x + r * 1.0, y + r * 0.1], fill=c, width=lw * 2)
    hx, hy, hr = x - r * 0.25, y - r * 0.3, r * 0.5
    for s in (-1, 1):  # pointed ears
        d.polygon(
            [
                (hx + s * hr * 0.95, hy - hr * 0.15),
                (hx + s * hr * 0.75, hy - hr * 1.35),
                (hx + s * hr * 0.15, hy - hr * 0.75),
            ],
            fill=c,
            outline=o,
            width=lw,
        )
    d.ellipse([hx - hr, hy - hr * 0.9, hx + hr, hy + hr * 0.9], fill=c, outline=o, width=lw)
    for s in (-1, 1):  # eyes: green with a slit pupil
        ex = hx + s * hr * 0.4
        d.ellipse([ex - hr * 0.22, hy - hr * 0.35, ex + hr * 0.22, hy + hr * 0.1], fill=(120, 220, 80), outline=o)
        d.line([ex, hy - hr * 0.3, ex, hy + hr * 0.05], fill=(0, 0, 0), width=max(1, lw // 2 + 1))
    d.polygon(
        [(hx - hr * 0.12, hy + hr * 0.2), (hx + hr * 0.12, hy + hr * 0.2), (hx, hy + hr * 0.35)], fill=(240, 120, 150)
    )
    for s in (-1, 1):  # whiskers
        for dy in (-0.05, 0.15):
            d.line(
                [hx + s * hr * 0.2, hy + hr * 0.35, hx + s * hr * 1.35, hy + hr * (0.25 + dy)],
                fill=(60, 60, 60) if t.colour == "white" else (230, 230, 230),
                width=max(1, lw // 2),
            )


def _dog(d, t, c, o, lw):
    x, y, r = _box(t)
    for lx in (-0.5, -0.2, 0.25, 0.55):  # legs
        d.rectangle(
            [x + r * lx - r * 0.09, y + r * 0.5, x + r * lx + r * 0.09, y + r * 0.95], fill=c, outline=o, width=lw
        )
    d.ellipse([x - r * 0.8, y - r * 0.05, x + r * 0.8, y + r * 0.7], fill=c, outline=o, width=lw)  # body
    d.line([x + r * 0.7, y + r * 0.15, x + r * 1.0, y - r * 0.25], fill=o, width=lw * 3)  # tail up
    hx, hy, hr = x - r * 0.55, y - r * 0.3, r * 0.45
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=c, outline=o, width=lw)
    d.ellipse(
        [hx - hr * 1.45, hy - hr * 0.2, hx - hr * 0.2, hy + hr * 0.7], fill=(200, 170, 150), outline=o, width=lw
    )  # snout
    d.ellipse([hx - hr * 1.5, hy - hr * 0.05, hx - hr * 1.1, hy + hr * 0.3], fill=(0, 0, 0))  # nose
    ear = _shade(c, 0.55) if t.colour != "black" else (90, 70, 60)
    d.ellipse(
        [hx + hr * 0.1, hy - hr * 0.9, hx + hr * 0.75, hy + hr * 0.6], fill=ear, outline=o, width=lw
    )  # floppy ear
    d.ellipse([hx - hr * 0.45, hy - hr * 0.5, hx - hr * 0.1, hy - hr * 0.15], fill=(255, 255, 255), outline=o)
    d.ellipse([hx - hr * 0.35, hy - hr * 0.42, hx - hr * 0.18, hy - hr * 0.22], fill=(0, 0, 0))


def _hat(d, t, c, o, lw):
    x, y, r = _box(t)
    if t.on:
        r *= 0.8
    d.ellipse([x - r * 0.95, y - r * 0.05, x + r * 0.95, y + r * 0.35], fill=c, outline=o, width=lw)  # brim
    d.rounded_rectangle(
        [x - r * 0.5, y - r * 0.6, x + r * 0.5, y + r * 0.2], radius=r * 0.2, fill=c, outline=o, width=lw
    )
    d.polygon([(x - r * 0.15, y - r * 0.6), (x, y - r * 0.45), (x + r * 0.15, y - r * 0.6)], fill=o)  # dent
    band = (40, 30, 25) if t.colour != "black" else (200, 60, 40)
    d.rectangle([x - r * 0.5, y - r * 0.08, x + r * 0.5, y + r * 0.08], fill=band)


def _ball(d, t, c, o, lw):
    x, y, r = _box(t)
    r *= 0.7
    d.ellipse([x - r, y - r, x + r, y + r], fill=c, outline=o, width=lw)
    d.arc(
        [x - r * 1.6, y - r * 0.5, x + r * 0.4, y + r * 1.5],
        280,
        40,
        fill=(255, 255, 255) if t.colour != "white" else (200, 40, 40),
        width=lw * 2,
    )
    d.ellipse([x - r * 0.55, y - r * 0.6, x - r * 0.2, y - r * 0.25], fill=(255, 255, 255))


def _tree(d, t, c, o, lw):
    x, y, r = _box(t)
    d.rectangle([x - r * 0.15, y, x + r * 0.15, y + r], fill=(110, 70, 35), outline=o, width=lw)
    for dx, dy, rr in ((0, -0.35, 0.55), (-0.4, 0.0, 0.42), (0.4, 0.0, 0.42), (0, 0.1, 0.45)):
        d.ellipse(
            [x + (dx - rr) * r, y + (dy - rr) * r, x + (dx + rr) * r, y + (dy + rr) * r], fill=c, outline=o, width=lw
        )


def _house(d, t, c, o, lw):
    x, y, r = _box(t)
    d.rectangle([x - r * 0.7, y - r * 0.2, x + r * 0.7, y + r * 0.9], fill=c, outline=o, width=lw)
    roof = (150, 40, 30) if t.colour not in ("red", "orange") else (90, 60, 50)
    d.polygon(
        [(x - r * 0.9, y - r * 0.15), (x, y - r * 0.95), (x + r * 0.9, y - r * 0.15)], fill=roof, outline=o, width=lw
    )
    d.rectangle([x - r * 0.15, y + r * 0.35, x + r * 0.15, y + r * 0.9], fill=(90, 55, 30), outline=o, width=lw)
    d.rectangle([x + r * 0.3, y + r * 0.05, x + r * 0.58, y + r * 0.33], fill=(180, 220, 250), outline=o, width=lw)
    d.rectangle([x - r * 0.58, y + r * 0.05, x - r * 0.3, y + r * 0.33], fill=(180, 220, 250), outline=o, width=lw)


def _sun(d, t, c, o, lw, night=False, sky=(0, 0, 0)):
    x, y, r = _box(t)
    r *= 0.8
    if night:  # a crescent moon
        d.ellipse([x - r * 0.6, y - r * 0.6, x + r * 0.6, y + r * 0.6], fill=c, outline=o, width=lw)
        d.ellipse([x - r * 0.25, y - r * 0.75, x + r * 0.85, y + r * 0.45], fill=sky)
        return
    for i in range(10):
        a = i * math.pi / 5
        d.line(
            [x + math.cos(a) * r * 0.6, y + math.sin(a) * r * 0.6, x + math.cos(a) * r, y + math.sin(a) * r],
            fill=c,
            width=lw * 2,
        )
    d.ellipse([x - r * 0.55, y - r * 0.55, x + r * 0.55, y + r * 0.55], fill=c, outline=o, width=lw)


def _car(d, t, c, o, lw):
    x, y, r = _box(t)
    d.polygon(
        [
            (x - r * 0.45, y - r * 0.1),
            (x - r * 0.3, y - r * 0.5),
            (x + r * 0.35, y - r * 0.5),
            (x + r * 0.55, y - r * 0.1),
        ],
        fill=c,
        outline=o,
        width=lw,
    )
    d.rounded_rectangle(
        [x - r * 0.95, y - r * 0.12, x + r * 0.95, y + r * 0.35], radius=r * 0.12, fill=c, outline=o, width=lw
    )
    d.polygon(
        [
            (x - r * 0.3, y - r * 0.12),
            (x - r * 0.22, y - r * 0.42),
            (x + r * 0.02, y - r * 0.42),
            (x + r * 0.02, y - r * 0.12),
        ],
        fill=(180, 220, 250),
    )
    d.polygon(
        [
            (x + r * 0.1, y - r * 0.12),
            (x + r * 0.1, y - r * 0.42),
            (x + r * 0.3, y - r * 0.42),
            (x + r * 0.45, y - r * 0.12),
        ],
        fill=(180, 220, 250),
    )
    for wx in (-0.55, 0.55):
        d.ellipse(
            [x + (wx - 0.22) * r, y + r * 0.15, x + (wx + 0.22) * r, y + r * 0.59],
            fill=(25, 25, 25),
            outline=(120, 120, 120),
            width=lw,
        )


def _fish(d, t, c, o, lw):
    x, y, r = _box(t)
    d.polygon(
        [(x + r * 0.45, y), (x + r * 0.95, y - r * 0.4), (x + r * 0.95, y + r * 0.4)], fill=c, outline=o, width=lw
    )
    d.ellipse([x - r * 0.8, y - r * 0.38, x + r * 0.55, y + r * 0.38], fill=c, outline=o, width=lw)
    d.polygon(
        [(x - r * 0.2, y - r * 0.3), (x + r * 0.1, y - r * 0.6), (x + r * 0.2, y - r * 0.3)],
        fill=_shade(c, 0.7),
        outline=o,
        width=lw,
    )
    d.ellipse([x - r * 0.6, y - r * 0.15, x - r * 0.4, y + r * 0.05], fill=(255, 255, 255), outline=o)
    d.ellipse([x - r * 0.55, y - r * 0.1, x - r * 0.46, y], fill=(0, 0, 0))


def _flower(d, t, c, o, lw):
    x, y, r = _box(t)
    d.line([x, y, x, y + r], fill=(40, 130, 40), width=lw * 2)
    d.ellipse([x, y + r * 0.45, x + r * 0.4, y + r * 0.65], fill=(50, 150, 50))
    for i in range(6):
        a = i * math.pi / 3
        px, py = x + math.cos(a) * r * 0.32, y - r * 0.3 + math.sin(a) * r * 0.32
        d.ellipse([px - r * 0.22, py - r * 0.22, px + r * 0.22, py + r * 0.22], fill=c, outline=o, width=lw)
    centre = (250, 200, 40) if t.colour != "yellow" else (150, 90, 30)
    d.ellipse([x - r * 0.17, y - r * 0.47, x + r * 0.17, y - r * 0.13], fill=centre, outline=o, width=lw)


_DRAW = {
    "cat": _cat,
    "dog": _dog,
    "hat": _hat,
    "ball": _ball,
    "tree": _tree,
    "house": _house,
    "car": _car,
    "fish": _fish,
    "flower": _flower,
}
# Drawing order: far things first, hats after their wearers.
_ORDER = {"sun": 0, "tree": 1, "house": 1, "car": 2, "ball": 2, "flower": 2, "fish": 2, "cat": 3, "dog": 3, "hat": 4}


def render(scene: Scene, seed: int = 0) -> np.ndarray:
    """The scene as uint8 [64, 64, 3]. ``seed`` varies the background's details only."""
    rng = np.random.default_rng(seed)
    W = SIZE * SS
    im = Image.new("RGB", (W, W))
    d = ImageDraw.Draw(im)
    _draw_background(d, scene.background, rng)
    lw = SS  # outline width: one pixel at 64x64
    for t in sorted(scene.things, key=lambda t: _ORDER[t.kind]):
        colour = RGB[t.colour]
        if t.kind == "sun":
            sky = im.getpixel((int(t.x * W), 2))
            _sun(d, t, colour, OUTLINE, lw, night=scene.background == "night", sky=sky)
        else:
            _DRAW[t.kind](d, t, colour, OUTLINE, lw)
    return np.asarray(im.resize((SIZE, SIZE), Image.LANCZOS))


# -- words and labels --------------------------------------------------------------------------

BACKGROUND_PHRASES = {
    "day": ("on the grass on a sunny day", "in a green meadow", "under a blue sky"),
    "night": ("at night", "under the night sky", "in the dark at night"),
    "desert": ("in the desert", "on the desert sand", "in a sandy desert"),
    "sea": ("by the sea", "in front of the ocean", "at the seaside"),
    "indoor": ("in a room", "indoors", "inside a house"),
    "snow": ("in the snow", "on a snowy day", "in a snowy field"),
}


def _name(t: Thing, background: str) -> str:
    if t.kind == "sun":
        return "moon" if background == "night" else "sun"
    return NAMES.get(t.kind, t.kind)


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A varied English caption, e.g. 'a red cat wearing a blue cowboy hat in the desert'.

    Colours are left out of a third of the captions and the place out of a quarter, so that a
    model trained on them cannot match captions by colours and background alone: it has to
    learn what the objects are.
    """
    parts = []
    hat = scene.get("hat")
    with_colour = rng.random() >= 0.35
    for t in scene.things:
        if t.kind == "hat" and t.on:
            continue
        size = f"{t.size} " if rng.random() < 0.3 else ""
        colour = f"{t.colour} " if with_colour else ""
        words = f"{size}{colour}{_name(t, scene.background)}"
        phrase = f"{'an' if words[0] in 'aeiou' else 'a'} {words}"
        if hat is not None and hat.on == t.kind:
            hat_words = f"{hat.colour} cowboy hat" if with_colour else "cowboy hat"
            phrase += f" wearing a {hat_words}" if rng.random() < 0.7 else f" with a {hat_words} on its head"
        parts.append(phrase)
    rng.shuffle(parts)
    if not parts:  # a bare background (a removal pair's second scene)
        parts = ["an empty scene"]
    things = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if rng.random() < 0.25:
        return things if rng.random() < 0.5 else f"a picture of {things}"
    place = BACKGROUND_PHRASES[scene.background][int(rng.integers(3))]
    template = int(rng.integers(4))
    if template == 0:
        return f"{things} {place}"
    if template == 1:
        return f"a picture of {things} {place}"
    if template == 2:
        return f"{place}, {things}"
    return f"a drawing of {things} {place}"


@dataclass
class Labels:
    """Arrays for one scene: presence [10] of 0/1, colour [10] (index, -1 if absent), background."""

    present: np.ndarray
    colour: np.ndarray
    background: int


def labels(scene: Scene) -> Labels:
    present = np.zeros(len(KINDS), np.int64)
    colour = np.full(len(KINDS), -1, np.int64)
    for t in scene.things:
        i = KINDS.index(t.kind)
        present[i] = 1
        colour[i] = COLOURS.index(t.colour)
    return Labels(present, colour, BACKGROUNDS.index(scene.background))


def twin(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same scene with one object turned into another kind (same place, size and, where
    allowed, colour): a minimal pair that only the object's kind tells apart."""
    movable = [t for t in scene.things if t.kind != "hat" and not (scene.get("hat") and scene.get("hat").on == t.kind)]
    if not movable:
        return scene
    old = movable[int(rng.integers(len(movable)))]
    banned = scene.kinds() | {"hat"} | ({"sun"} if scene.background == "indoor" else set())
    choices = [k for k in KINDS if k not in banned]
    if not choices:
        return scene
    kind = choices[int(rng.integers(len(choices)))]
    colours = ALLOWED_COLOURS.get(kind, COLOURS)
    colour = old.colour if old.colour in colours else colours[int(rng.integers(len(colours)))]
    new = Thing(kind, colour, old.size, old.x, old.y if kind != "sun" else min(old.y, 0.3))
    return Scene(scene.background, [new if t is old else t for t in scene.things])


def take_out(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same scene with one object taken out (a hat's wearer takes its hat along): a pair that
    differs by an object which is there or not, where a twin differs by one object's kind. A
    one-object scene leaves its bare background."""
    gone = scene.things[int(rng.integers(len(scene.things)))]
    return Scene(
        scene.background, [t for t in scene.things if t is not gone and not (t.kind == "hat" and t.on == gone.kind)]
    )


def dataset(n: int, seed: int, twins: bool = False, removals: bool = False) -> tuple[np.ndarray, Labels, list[str]]:
    """``n`` scenes: images uint8 [n, 64, 64, 3], stacked labels, and captions.

    With ``twins``, scenes come in minimal pairs (2i, 2i+1): see :func:`twin`. With ``removals``,
    scene 2i+1 is scene 2i with one object taken out (:func:`take_out`), drawn with the same
    background details.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    present = np.zeros((n, len(KINDS)), np.int64)
    colour = np.zeros((n, len(KINDS)), np.int64)
    background = np.zeros(n, np.int64)
    captions = []
    if twins and removals:
        raise ValueError("scenes pair up as twins or as removals, not both")
    previous = None
    for i in range(n):
        if removals and i % 2 == 1:
            scene = take_out(previous, rng)  # drawn with its first scene's background details
        else:
            scene = twin(previous, rng) if twins and i % 2 == 1 else sample_scene(rng)
            details = int(rng.integers(2**31))
        previous = scene
        images[i] = render(scene, seed=details)
        lab = labels(scene)
        present[i], colour[i], background[i] = lab.present, lab.colour, lab.background
        captions.append(caption(scene, rng))
    return images, Labels(present, colour, background), captions
