"""The sample images shipped in ``assets/samples`` (rebuilt by ``write_samples``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from sae.demo import world
from sae.demo.world import Scene, Thing, hat_on

SAMPLES = {
    "cat-on-grass": Scene(
        "day", [Thing("cat", "orange", "large", 0.45, 0.62), Thing("sun", "yellow", "medium", 0.8, 0.2)]
    ),
    "dog-in-a-hat": Scene("desert", [_dog := Thing("dog", "white", "large", 0.55, 0.62), hat_on(_dog, "red")]),
    "empty-desert": Scene("desert", []),
    "fish-by-the-sea": Scene(
        "sea", [Thing("fish", "red", "large", 0.5, 0.75), Thing("ball", "blue", "small", 0.25, 0.45)]
    ),
    "house-at-night": Scene(
        "night",
        [
            Thing("house", "white", "large", 0.4, 0.62),
            Thing("sun", "white", "medium", 0.8, 0.2),
            Thing("tree", "green", "medium", 0.78, 0.65),
        ],
    ),
    "car-in-the-snow": Scene(
        "snow", [Thing("car", "blue", "large", 0.5, 0.7), Thing("flower", "purple", "small", 0.2, 0.72)]
    ),
}


def write_samples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, scene in SAMPLES.items():
        path = folder / f"{name}.png"
        Image.fromarray(world.render(scene, seed=7)).save(path)
        out.append(path)
    return out
