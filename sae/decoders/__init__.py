"""Diffusion decoders behind one small protocol: image embedding in, image out.

``Decoder.decode(image_embeds, init_image, settings, on_step, source_embeds, within)``:
``image_embeds`` [1, e] is the (edited) CLIP image embedding; ``init_image`` (optional) is the
image to start from, noised to ``settings.strength`` (img2img); ``source_embeds`` [1, e] (optional)
is the unedited embedding, so that with ``settings.region == "edited"`` only what the edit changes
is repainted (``sae.decoders.region``), or only the brushed area ``within`` ([h, w] 0/1 over the
picture, any resolution) when the edits are limited to it; ``on_step(step, total)`` reports
progress and may raise ``DecodeCancelled`` to stop. The same settings and seed give the same
pixels. Each decoder paints at its own ``sizes`` (``sae.decoders.sizes``) and returns the result
at the init image's own size.
"""

from sae.decoders.base import DecodeCancelled, Decoder
from sae.decoders.table import DECODERS, DecodeSettings, default_steps, default_strength

__all__ = ["DECODERS", "DecodeCancelled", "DecodeSettings", "Decoder", "default_steps", "default_strength"]
