"""Which part of a picture the encoder reads, and where each of its patches lies on the picture.

open_clip's preprocessing (its ``resize_mode``) decides: ``shortest`` (every ViT that the
decoders pair with) scales the short side to the model's size and keeps the centre square, so a
landscape photo's left and right ends are never seen; ``longest`` pads the picture to a square;
``squash`` stretches all of it. The view puts the encoder's patch grid on the picture's own
pixels, so a heatmap, a brush stroke and a repainted area all mean the same place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

RASTER = 256  # long side of the raster a brushed area is handed to the decoder on


@dataclass(frozen=True)
class EncoderView:
    size: tuple[int, int]  # the picture's (width, height)
    box: tuple[float, float, float, float]  # left, top, right, bottom in picture pixels; beyond the picture = padding
    grid: int  # patches per side (0: the SAE reads no patches)

    @classmethod
    def of(cls, resize_mode: str, width: int, height: int, grid: int) -> EncoderView:
        if resize_mode == "squash":
            return cls((width, height), (0.0, 0.0, float(width), float(height)), grid)
        side = min(width, height) if resize_mode == "shortest" else max(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return cls((width, height), (left, top, left + side, top + side), grid)

    @property
    def is_partial(self) -> bool:
        """True when part of the picture lies outside what the encoder reads."""
        left, top, right, bottom = self.box
        return left > 0 or top > 0 or right < self.size[0] or bottom < self.size[1]

    def patch_at(self, x: float, y: float) -> int | None:
        """The patch over picture pixel (x, y), or None outside the grid or the picture."""
        left, top, right, bottom = self.box
        w, h = self.size
        if not self.grid or not (0 <= x < w and 0 <= y < h and left <= x < right and top <= y < bottom):
            return None
        col = min(self.grid - 1, int((x - left) / (right - left) * self.grid))
        row = min(self.grid - 1, int((y - top) / (bottom - top) * self.grid))
        return row * self.grid + col

    def cell(self, patch: int) -> tuple[float, float, float, float]:
        """Patch ``patch``'s rectangle (left, top, right, bottom) in picture pixels."""
        left, top, right, bottom = self.box
        row, col = divmod(patch, self.grid)
        cw, ch = (right - left) / self.grid, (bottom - top) / self.grid
        return left + col * cw, top + row * ch, left + (col + 1) * cw, top + (row + 1) * ch

    def area(self, patches: Iterable[int]) -> torch.Tensor:
        """[h, w] 0/1 over the whole picture (long side ``RASTER`` at most): the given patches."""
        w, h = self.size
        scale = min(1.0, RASTER / max(w, h))
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        out = torch.zeros(rh, rw)
        for p in patches:
            if 0 <= p < self.grid * self.grid:
                left, top, right, bottom = (v * scale for v in self.cell(p))
                x0, y0 = max(0, int(left)), max(0, int(top))
                x1, y1 = min(rw, max(x0 + 1, round(right))), min(rh, max(y0 + 1, round(bottom)))
                out[y0:y1, x0:x1] = 1
        return out
