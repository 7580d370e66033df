"""A slider's range at a glance: the picture painted at a few positions of one slider, side by
side. ``sae-studio sweep`` writes it as one PNG; the editor shows the same row under the sliders."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from sae.units import Scale

POSITIONS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # slider units
CAPTION = 18  # pixels of the caption line under each picture


def positions(scale: Scale, wanted: Sequence[float] = POSITIONS) -> list[float]:
    """``wanted`` slider positions kept within the slider's range, each once, in order."""
    out: list[float] = []
    for p in wanted:
        p = min(max(float(p), -scale.bottom), scale.top)
        if p not in out:
            out.append(p)
    return out


def caption(position: float, scale: Scale) -> str:
    units = "units" if scale.calibrated else "typical"
    return f"{position:+g} {units} ({scale.amount(position):+.3g})" if position else "0 (as is)"


def strip(pictures: Sequence[Image.Image], captions: Sequence[str], height: int = 192) -> Image.Image:
    """The pictures scaled to ``height``, left to right, each with its caption underneath."""
    scaled = [p.convert("RGB").resize((max(1, round(p.width * height / p.height)), height)) for p in pictures]
    out = Image.new("RGB", (sum(p.width for p in scaled) + 4 * (len(scaled) - 1), height + CAPTION), "white")
    draw = ImageDraw.Draw(out)
    x = 0
    for picture, text in zip(scaled, captions, strict=True):
        out.paste(picture, (x, 0))
        draw.text((x + 4, height + 3), text, fill=(40, 40, 40))
        x += picture.width + 4
    return out
