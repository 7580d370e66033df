"""Neutral images: what a latent's effect is measured on (labels) and painted on (causal previews).

For the demo CLIP they are the world's empty scenes; for real encoders, flat mid-grey images, on
which any object or style a preview shows comes from the latent alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sae.backbone import Backbone
from sae.worlds import world_of


def neutral_images(backbone: Backbone) -> list[Image.Image]:
    """The encoder's world's empty scenes (demo: every background, twice) or one grey image."""
    world = world_of(backbone)
    if world is not None:
        return world.neutral_images()
    size = backbone.image_size
    return [Image.fromarray(np.full((size, size, 3), 128, np.uint8))]


def preview_canvas(backbone: Backbone) -> Image.Image:
    """The one image causal previews start from (demo: an empty day sky over grass)."""
    return neutral_images(backbone)[0]
