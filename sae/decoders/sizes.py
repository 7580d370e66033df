"""The size a decoder paints at, and the way back to the picture's own size.

A diffusion decoder paints well near the area it was trained at, and only at sides that its
autoencoder and UNet can halve as often as they downsample. Each decoder states both in a
``SizePolicy`` read from its own pipeline config. A picture of any size and shape goes to the
decoder on a ``Canvas``: its aspect kept (pictures longer than ``MAX_ASPECT``:1 are padded by
repeating their edges), its area brought near the native one, its sides rounded to the multiple.
The painted result comes back at the picture's own pixel size; where the decoder repainted only
a region, the picture's own pixels are kept outside it, so nothing unedited loses resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MAX_ASPECT = 4.0  # longer pictures are padded to this aspect: a UNet needs a few cells each way


def _get(config, key: str):
    return config[key] if isinstance(config, dict) else getattr(config, key)


@dataclass(frozen=True)
class SizePolicy:
    native: int  # side in pixels of the square whose area the decoder was trained to paint
    multiple: int  # every pixel side is a multiple of this: the autoencoder's and the UNet's downsampling

    @classmethod
    def from_configs(cls, unet_config, autoencoder_config) -> SizePolicy:
        """From a diffusers UNet's and autoencoder's (VQModel or AutoencoderKL) configs: each of
        their down blocks but the last halves the sides, and the UNet's ``sample_size`` is its
        training size in latent cells."""
        vae_factor = 2 ** (len(_get(autoencoder_config, "block_out_channels")) - 1)
        unet_factor = 2 ** (len(_get(unet_config, "down_block_types")) - 1)
        sample = _get(unet_config, "sample_size")
        sample = sample[0] if isinstance(sample, list | tuple) else sample
        return cls(native=int(sample) * vae_factor, multiple=vae_factor * unet_factor)

    def square(self, scale: float = 1.0) -> int:
        """The side a picture painted from nothing gets: the native one, or at ``scale`` of it."""
        return self.native if scale == 1.0 else self.canvas(self.native, self.native, scale).working[0]

    def canvas(self, width: int, height: int, scale: float = 1.0) -> Canvas:
        """How a ``width`` x ``height`` picture is painted (see ``Canvas``), with the native side
        times ``scale`` (a quick preview paints smaller)."""
        aspect = width / height
        padded_w, padded_h = width, height
        if aspect > MAX_ASPECT:
            padded_h = math.ceil(width / MAX_ASPECT)
        elif aspect < 1 / MAX_ASPECT:
            padded_w = math.ceil(height / MAX_ASPECT)
        aspect = padded_w / padded_h
        area = (self.native * scale) ** 2
        work_w = max(self.multiple, round(math.sqrt(area * aspect) / self.multiple) * self.multiple)
        work_h = max(self.multiple, round(math.sqrt(area / aspect) / self.multiple) * self.multiple)
        offset = ((padded_w - width) // 2, (padded_h - height) // 2)
        return Canvas((width, height), (padded_w, padded_h), offset, (work_w, work_h))


@dataclass(frozen=True)
class Canvas:
    """A picture of ``size`` placed at ``offset`` in a frame of ``padded`` size (the picture
    itself unless its aspect exceeds ``MAX_ASPECT``), which the decoder paints at ``working`` size."""

    size: tuple[int, int]  # the picture's own (width, height)
    padded: tuple[int, int]
    offset: tuple[int, int]
    working: tuple[int, int]

    @property
    def is_padded(self) -> bool:
        return self.padded != self.size

    def note(self) -> str | None:
        """One sentence on what happens to a picture far from the decoder's size or shape (None if
        nothing worth saying)."""
        (w, h), (ww, wh) = self.size, self.working
        if self.is_padded:
            return (
                f"The picture is {w}x{h}, longer than {MAX_ASPECT:g}:1; the decoder paints it padded to "
                f"{self.padded[0]}x{self.padded[1]} by repeating its edges, and the padding is cut off again."
            )
        if w * h * 16 < ww * wh:
            return (
                f"The picture is {w}x{h}, far smaller than the decoder paints; it is upscaled to {ww}x{wh} "
                f"for the models and the result is scaled back to {w}x{h}."
            )
        return None

    def to_working(self, image: Image.Image) -> Image.Image:
        """``image`` (the picture, RGB) padded and resized to the working size."""
        image = image.convert("RGB")
        if self.is_padded:
            (ox, oy), (pw, ph) = self.offset, self.padded
            arr = np.asarray(image)
            arr = np.pad(arr, ((oy, ph - image.height - oy), (ox, pw - image.width - ox), (0, 0)), mode="edge")
            image = Image.fromarray(arr)
        if image.size == self.working:
            return image
        return image.resize(self.working, Image.Resampling.LANCZOS)

    def to_picture(self, painted: Image.Image, picture: Image.Image, region: torch.Tensor | None = None) -> Image.Image:
        """``painted`` (at the working size) back at the picture's own size. With ``region`` [h, w]
        (0/1 over the working frame, any resolution), the picture keeps its own pixels outside the
        region, blended over about one region cell at its border."""
        if painted.size == self.size and not self.is_padded:
            return painted
        frame = painted.resize(self.padded, Image.Resampling.LANCZOS)
        (ox, oy), (w, h) = self.offset, self.size
        out = frame.crop((ox, oy, ox + w, oy + h))
        if region is None:
            return out
        cells = Image.fromarray((region.float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8), "L")
        mask = cells.resize(self.padded, Image.Resampling.BILINEAR).crop((ox, oy, ox + w, oy + h))
        return Image.composite(out, picture.convert("RGB"), mask)

    def to_latents(self, area: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``area`` [h, w] (0/1 over the picture, any resolution) as [grid_h, grid_w] 0/1 over the
        working frame's latent grid: a cell is in when any of it is."""
        (ox, oy), (w, h), (pw, ph) = self.offset, self.size, self.padded
        scale = min(1.0, FINE / max(pw, ph))  # the frame is rasterised at FINE pixels at most
        x0, y0, x1, y1 = (round(v * scale) for v in (ox, oy, ox + w, oy + h))
        frame = torch.zeros(max(1, round(ph * scale)), max(1, round(pw * scale)))
        frame[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)] = F.interpolate(
            (area > 0).float()[None, None], size=(max(1, y1 - y0), max(1, x1 - x0)), mode="nearest"
        )[0, 0]
        return (F.adaptive_max_pool2d(frame[None, None], grid)[0, 0] > 0).float()


FINE = 1024  # side of the raster a brushed area is laid on before it meets the latent grid
