"""Stable Diffusion 2.1 unCLIP (diffusers ``StableUnCLIPImg2ImgPipeline``), conditioned on ViT-H-14 image embeddings.

``stabilityai/stable-diffusion-2-1-unclip`` takes the (edited) ViT-H-14 ``laion2b_s32b_b79k``
image embedding directly; it makes a variation of the embedding rather than noising the input
image, so ``strength`` does not apply, the init image only sets the output's size and shape, and the whole image is
repainted whatever the edit region setting says. The text
prompt is empty: the edit lives in the embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from sae.decoders.base import DecodeSettings
from sae.decoders.sizes import SizePolicy
from sae.decoders.table import DECODERS
from sae.errors import UserError
from sae.weights import read_ahead


class UnclipDecoder:
    def __init__(
        self,
        source: str | Path,
        name: str = "sd21-unclip",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        cpu_offload: bool = False,
    ):
        from diffusers import StableUnCLIPImg2ImgPipeline

        try:
            read_ahead(source)
            self.pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(str(source), dtype=dtype)
        except Exception as e:
            raise UserError(
                f"Could not load the SD 2.1 unCLIP decoder from {source}: {str(e).splitlines()[0][:200]}; "
                "check the folder, or the network and disk space for a first download."
            ) from e
        self.pipe.set_progress_bar_config(disable=True)
        if cpu_offload:
            self.pipe.enable_model_cpu_offload()
        else:
            self.pipe.to(device)
        self.name, self.dtype = name, dtype
        self.sizes = SizePolicy.from_configs(self.pipe.unet.config, self.pipe.vae.config)
        self.embed_dim = int(self.pipe.image_normalizer.config.embedding_dim)

    def decode(
        self,
        image_embeds: torch.Tensor,
        init_image: Image.Image | None,
        settings: DecodeSettings,
        on_step: Callable[[int, int], None] | None = None,
        source_embeds: torch.Tensor | None = None,
        within: torch.Tensor | None = None,
    ) -> Image.Image:
        # source_embeds, within and settings.region are not used: this pipeline draws a variation from noise
        # with no latents of the input to keep, so it repaints the whole image whatever the region.
        if image_embeds.shape[-1] != self.embed_dim:
            raise UserError(
                f"The {self.name} decoder takes {self.embed_dim}-d image embeddings, not "
                f"{image_embeds.shape[-1]}-d; pair it with {DECODERS['sd21-unclip'].encoder}."
            )
        canvas = None if init_image is None else self.sizes.canvas(*init_image.size, settings.scale)
        w, h = (self.sizes.square(settings.scale),) * 2 if canvas is None else canvas.working

        def callback(step, timestep, latents):  # this pipeline still has the older callback API
            if on_step is not None:
                on_step(step + 1, settings.steps)

        painted = self.pipe(
            prompt="",
            image_embeds=image_embeds.reshape(1, -1).to(self.dtype),
            noise_level=0,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            height=h,
            width=w,
            generator=torch.Generator("cpu").manual_seed(settings.seed),
            output_type="pil",
            callback=callback,
            callback_steps=1,
        ).images[0]
        return painted if canvas is None else canvas.to_picture(painted, init_image)


def open_decoder(
    source: Path,
    backbone,
    name: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cpu_offload: bool = False,
) -> UnclipDecoder:
    """An SD 2.1 unCLIP pipeline folder (it needs nothing of the encoder but the embedding's width)."""
    return UnclipDecoder(source, name=name, device=device, dtype=dtype, cpu_offload=cpu_offload)
