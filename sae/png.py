"""PNG files that carry their preset in a text chunk, so an edited image can be reopened with its sliders."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from sae import atomic, presets

CHUNK_KEY = "sae-studio-preset"


def save_with_preset(image: Image.Image, path: str | Path, preset: presets.Preset) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK_KEY, json.dumps(preset.to_json()))
    with atomic.atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)


def preset_in(path: str | Path) -> presets.Preset | None:
    """The preset stored in a PNG written by sae-studio, or None if it carries none."""
    with Image.open(path) as im:
        text = getattr(im, "text", {}).get(CHUNK_KEY) if im.format == "PNG" else None
    return presets.parse(text, source=f"The preset inside {path}") if text else None
