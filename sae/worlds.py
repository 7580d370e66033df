"""What is particular to the pictures an encoder knows, supplied to the edit engine from above.

An encoder trained on a world of its own (the demo's cartoon world) carries a marker file in its
folder naming that world; the layer that knows the world registers a ``World`` for it, and the
engine asks ``world_of(backbone)`` instead of knowing any world itself. Other encoders get None:
grey canvases, the everyday vocabulary and the indexed images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sae import atomic
from sae.errors import UserError

MARKER = "demo_world.json"  # in an encoder's folder: {"world": NAME, ...}


@dataclass(frozen=True)
class World:
    name: str  # as the marker names it
    vocabulary: Callable[[], list[tuple[str, str]]]  # (label, prompt) pairs for automatic labels
    neutral_images: Callable[[], list[Image.Image]]  # empty scenes: effects are measured and previews painted on them
    comparison_images: Callable[[int], list[Image.Image]]  # n ordinary scenes, when an induced slider has no others


_WORLDS: dict[str, World] = {}


def register(world: World) -> None:
    _WORLDS[world.name] = world


def named(name: str) -> World | None:
    return _WORLDS.get(name)


def world_of(backbone) -> World | None:
    """The registered world whose encoder ``backbone`` is, or None for an encoder of no world of its own."""
    model_id = backbone.model_id
    if not model_id.startswith("local-dir:"):
        return None
    marker = Path(model_id[len("local-dir:") :]) / MARKER
    if not marker.is_file():
        return None
    try:
        name = str(atomic.parse_json(marker.read_text()).get("world", ""))
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"{marker} is not valid JSON ({e}); restore the encoder's folder.") from e
    if name not in _WORLDS:
        raise UserError(
            f"The encoder in {marker.parent} was trained on '{name}', whose scenes and vocabulary "
            "are not loaded; open it through sae-studio (or import sae.demo first)."
        )
    return _WORLDS[name]
