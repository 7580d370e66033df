"""Neutral images: what a latent's effect is measured on (labels) and painted on (causal previews).

For the demo CLIP they are the world's empty scenes; for real encoders, flat mid-grey images, on
which any object or style a preview shows comes from the latent alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sae.backbone import Backbone


def neutral_images(backbone: Backbone) -> list[Image.Image]:
    """A dozen empty scenes (demo: every background, twice) or one grey image."""
    from sae.vocabulary import is_demo_backbone

    if is_demo_backbone(backbone):
        from sae.demo import world

        return [Image.fromarray(world.render(world.Scene(b), seed=s)) for b in world.BACKGROUNDS for s in (0, 1)]
    size = backbone.image_size
    return [Image.fromarray(np.full((size, size, 3), 128, np.uint8))]


def preview_canvas(backbone: Backbone) -> Image.Image:
    """The one image causal previews start from (demo: an empty day sky over grass)."""
    return neutral_images(backbone)[0]
