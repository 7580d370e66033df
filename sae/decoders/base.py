"""The decoder protocol and its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image


class DecodeCancelled(Exception):
    """Raised from an ``on_step`` callback to abandon a decode (a newer slider state arrived)."""


@dataclass
class DecodeSettings:
    steps: int = 12
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
