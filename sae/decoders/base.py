"""The decoder protocol and its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image


class DecodeCancelled(Exception):
    """Raised from an ``on_step`` callback to abandon a decode (a newer slider state arrived)."""


# Denoising steps each decoder runs unless told otherwise (users change them in the Generation
# panel or with --steps; presets carry their own). The demo decoder keeps as much of a scene at 8
# steps as at 12 (img2img at strength 0.5, judged on 192 held-out scenes: 0.5625 either way, and
# 0.568 at 6), and 8 steps are 4 UNet calls instead of 6 per slider move. The hub decoders'
# schedulers are trained for 1,000 steps and diffusers' examples run them at 50 to 100; 30 keeps an
# edit (15 steps at strength 0.5) interactive on a GPU. A pipeline folder gets the hub default.
DEFAULT_STEPS = {"demo": 8, "kandinsky-2.2": 30, "sd21-unclip": 30}
FOLDER_STEPS = 30


def default_steps(decoder: str) -> int:
    return DEFAULT_STEPS.get(decoder, FOLDER_STEPS)


@dataclass
class DecodeSettings:
    steps: int = DEFAULT_STEPS["demo"]
    strength: float = 0.5  # img2img: 0 keeps the input, 1 starts from pure noise
    guidance: float = 3.0  # classifier-free guidance scale on the image embedding
    seed: int = 0


class Decoder(Protocol):
    name: str
    embed_dim: int

    def decode(
        self,
        image_embeds: torch.Tensor,
        init_image: Image.Image | None,
        settings: DecodeSettings,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Image.Image: ...
