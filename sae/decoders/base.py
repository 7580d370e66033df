"""The decoder protocol and its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image

from sae.decoders.sizes import SizePolicy


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


# The img2img strength each decoder edits at unless told otherwise (the Generation panel,
# --strength and presets set their own). The demo decoder at 0.9, because with the edit region
# (sae.decoders.region, the default) only what an edit changes is repainted, so the rest of the
# picture no longer pays for a high strength. bench/edit_quality.py --n 200 at 90% preservation:
# a cat added in 51% of scenes and a hat removed by set 0 in 88% (98% of other labels kept), where
# the whole image repainted at 0.65 (the default before regions) gave 34% and 32%, and at 0.9 62%
# and 81% while an unedited image lost an object in 31% of scenes (all on the v3 UNet, every token;
# the shipped UNet, taught edit pairs, with each latent on its tokens: 85% and 97%). The hub decoders keep diffusers'
# usual 0.5, as does a pipeline folder: no figures for them here.
DEFAULT_STRENGTH = {"demo": 0.9}
FOLDER_STRENGTH = 0.5


def default_strength(decoder: str) -> float:
    return DEFAULT_STRENGTH.get(decoder, FOLDER_STRENGTH)


@dataclass
class DecodeSettings:
    steps: int = DEFAULT_STEPS["demo"]
    strength: float = DEFAULT_STRENGTH["demo"]  # img2img: 0 keeps the input, 1 starts from pure noise
    guidance: float = 3.0  # classifier-free guidance scale on the image embedding
    seed: int = 0
    # "edited": repaint only where the edit changes the decoder's prediction and keep the input
    # elsewhere (sae.decoders.region); "whole": plain img2img over the whole picture
    region: str = "edited"


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
        within: torch.Tensor | None = None,  # [h, w] 0/1 brushed area over the picture: with a region, repaint only there
    ) -> Image.Image: ...
