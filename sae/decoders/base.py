"""The decoder protocol and its settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from PIL import Image

from sae.decoders.sizes import SizePolicy
from sae.decoders.table import DecodeSettings


class DecodeCancelled(Exception):
    """Raised from an ``on_step`` callback to abandon a decode (a newer slider state arrived)."""


class Decoder(Protocol):
    name: str
    embed_dim: int
    sizes: SizePolicy  # the size it paints at; results come back at the init image's own size

    def decode(
        self,
        image_embeds: torch.Tensor,
        init_image: Image.Image | None,
        settings: DecodeSettings,
        on_step: Callable[[int, int], None] | None = None,
        source_embeds: torch.Tensor | None = None,  # the unedited embedding, for settings.region == "edited"
        within: torch.Tensor
        | None = None,  # [h, w] 0/1 brushed area over the picture: with a region, repaint only there
    ) -> Image.Image: ...
