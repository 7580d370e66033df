"""What the demo world supplies to the edit engine (``sae.worlds``): its vocabulary, its empty
scenes and fresh scenes to compare induced sliders' examples with."""

from __future__ import annotations

from PIL import Image

import sae.demo.world as world
from sae.worlds import World

NAME = "sae-studio demo world"  # as the demo CLIP's marker file names it
COMPARISON_SEED = 6  # world seed of the scenes that stand in for "images without the concept"


def demo_vocabulary() -> list[tuple[str, str]]:
    """The demo world's concepts: its objects, colours, sizes and places."""
    out = [(world.NAMES.get(k, k), f"a picture of a {world.NAMES.get(k, k)}") for k in world.KINDS]
    out.append(("moon", "a picture of a moon"))
    out += [(f"{c} object", f"a picture of a {c} object") for c in world.COLOURS]
    out += [(f"{s} object", f"a picture of a {s} object") for s in world.SIZES]
    places = {"day": "sunny day", "night": "night", "desert": "desert", "sea": "sea", "indoor": "room", "snow": "snow"}
    out += [(places[b], f"a picture {world.BACKGROUND_PHRASES[b][0]}") for b in world.BACKGROUNDS]
    out.append(("hat on an animal", "a picture of an animal wearing a cowboy hat"))
    return out


def empty_scenes() -> list[Image.Image]:
    """Every background with nothing on it, twice (the first, a day sky over grass, is the preview canvas)."""
    return [Image.fromarray(world.render(world.Scene(b), seed=s)) for b in world.BACKGROUNDS for s in (0, 1)]


def fresh_scenes(n: int) -> list[Image.Image]:
    images, _labels, _captions = world.dataset(n, seed=COMPARISON_SEED)
    return [Image.fromarray(im) for im in images]


DEMO_WORLD = World(NAME, demo_vocabulary, empty_scenes, fresh_scenes)
