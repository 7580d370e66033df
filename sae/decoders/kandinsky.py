"""Kandinsky 2.2's decoder (diffusers ``KandinskyV22Pipeline`` / ``KandinskyV22Img2ImgPipeline``).

The real one is ``kandinsky-community/kandinsky-2-2-decoder``, conditioned on ViT-bigG-14
(``laion2b_s39b_b160k``) image embeddings; the demo decoder is the same classes, tiny. The
negative embedding for guidance is the encoder's embedding of an all-zero image, as Kandinsky's
prior makes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from sae.decoders.base import DecodeSettings
from sae.decoders.region import EditRegion, KeepOutside, grow
from sae.decoders.sizes import Canvas, SizePolicy
from sae.errors import UserError
from sae.weights import read_ahead


class KandinskyDecoder:
    def __init__(
        self,
        source: str | Path,
        negative_embeds: torch.Tensor,
        name: str = "kandinsky-2.2",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        cpu_offload: bool = False,
    ):
        from diffusers import KandinskyV22Img2ImgPipeline, KandinskyV22Pipeline

        try:
            read_ahead(source)
            self.text2img = KandinskyV22Pipeline.from_pretrained(str(source), dtype=dtype)
        except Exception as e:  # offline, missing files, wrong folder: one sentence
            raise UserError(
                f"Could not load the Kandinsky 2.2 decoder from {source}: {str(e).splitlines()[0][:200]}; "
                "check the folder, or the network and disk space for a first download."
            ) from e
        self.img2img = _img2img_class(KandinskyV22Img2ImgPipeline)(**self.text2img.components)
        self.img2img.movq.encode = LastEncoding(self.img2img.movq.encode)
        for pipe in (self.text2img, self.img2img):
            pipe.set_progress_bar_config(disable=True)
            if cpu_offload:
                pipe.enable_model_cpu_offload()
            else:
                pipe.to(device)
        self.name, self.dtype = name, dtype
        self.sizes = SizePolicy.from_configs(self.text2img.unet.config, self.text2img.movq.config)
        self.edit_region = EditRegion()
        self.negative_embeds = negative_embeds.reshape(1, -1)
        self.embed_dim = int(self.negative_embeds.shape[1])

    def decode(
        self,
        image_embeds: torch.Tensor,
        init_image: Image.Image | None,
        settings: DecodeSettings,
        on_step: Callable[[int, int], None] | None = None,
        source_embeds: torch.Tensor | None = None,
        within: torch.Tensor | None = None,
    ) -> Image.Image:
        if image_embeds.shape[-1] != self.embed_dim:
            raise UserError(
                f"The {self.name} decoder takes {self.embed_dim}-d image embeddings, not "
                f"{image_embeds.shape[-1]}-d; pair it with its own encoder."
            )
        images = None if init_image is None else [init_image]
        sources = None if source_embeds is None else source_embeds.reshape(1, -1)
        return self._run(image_embeds.reshape(1, -1), images, settings, on_step, sources, within)[0]

    @torch.no_grad()
    def decode_many(
        self,
        image_embeds: torch.Tensor,
        init_images: list[Image.Image] | None,
        settings: DecodeSettings,
        source_embeds: torch.Tensor | None = None,
    ) -> list[Image.Image]:
        """One batched call for many embeddings (and init images of one size): what batch
        evaluation uses. Each image gets the generator of ``settings.seed``'s stream in turn."""
        n = len(image_embeds)
        return self._run(
            image_embeds.reshape(n, -1),
            init_images,
            settings,
            None,
            None if source_embeds is None else source_embeds.reshape(n, -1),
        )

    @torch.no_grad()
    def _run(
        self,
        embeds: torch.Tensor,
        init_images: list[Image.Image] | None,
        settings: DecodeSettings,
        on_step: Callable[[int, int], None] | None,
        sources: torch.Tensor | None,
        within: torch.Tensor | None = None,
    ) -> list[Image.Image]:
        """Decode ``embeds`` [n, e]: from noise without init images; else img2img from them, over
        the whole image or (``settings.region == "edited"`` with the unedited ``sources``) only where
        the edit changes the decoder's prediction, or only ``within`` a brushed area if given
        ([h, w] 0/1 over the picture). Any picture size: the decoder paints on ``self.sizes``'
        canvas and each result comes back at its picture's own size."""
        n = len(embeds)
        generator = torch.Generator("cpu").manual_seed(settings.seed)
        common = dict(
            image_embeds=embeds.to(self.dtype),
            negative_image_embeds=self.negative_embeds.to(self.dtype).expand(n, -1),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=generator,
            output_type="pil",
        )
        if init_images is None:
            side = self.sizes.square(settings.scale)
            return self.text2img(
                height=side, width=side, callback_on_step_end=_progress(on_step, settings.steps), **common
            ).images
        pictures = [im.convert("RGB") for im in init_images]
        canvas = self.sizes.canvas(*pictures[0].size, settings.scale)
        images = [canvas.to_working(im) for im in pictures]
        w, h = canvas.working
        if settings.region == "edited" and sources is not None:
            painted, region = self._repaint_region(embeds, sources, images, canvas, settings, on_step, common, within)
            return [canvas.to_picture(p, im, r) for p, im, r in zip(painted, pictures, region, strict=True)]
        if settings.strength >= 1.0:  # nothing of the input survives: plain generation at its size
            painted = self.text2img(
                height=h, width=w, callback_on_step_end=_progress(on_step, settings.steps), **common
            ).images
        else:
            # height and width None: the images are at the working size already, and diffusers'
            # Kandinsky 2.2 img2img hands (width, height) to a preprocess that takes (height, width)
            total = max(1, int(settings.steps * settings.strength))
            painted = self.img2img(
                image=images,
                strength=settings.strength,
                height=None,
                width=None,
                callback_on_step_end=_progress(on_step, total),
                **common,
            ).images
        return [canvas.to_picture(p, im) for p, im in zip(painted, pictures, strict=True)]

    def _repaint_region(
        self, embeds, sources, images, canvas: Canvas, settings, on_step, common, within=None
    ) -> tuple[list[Image.Image], torch.Tensor]:
        """Img2img only where the edit acts (or ``within`` the brushed area); the painted images
        at the working size and their regions [B, h, w] over the working frame (all zero for no
        edit: then the painted images are the autoencoder's redrawing of the inputs)."""
        pipe = self.img2img
        pixels = torch.cat([pipe.image_processor.preprocess(im) for im in images]).to(pipe.device, self.dtype)
        latents = pipe.movq.encode(pixels)["latents"]  # remembered: the pipeline's own encode hits it
        if within is not None and bool((embeds != sources).any()):
            area = canvas.to_latents(within, tuple(latents.shape[-2:]))
            region = grow(area[None, None]).to(latents).expand(len(latents), -1, -1, -1)
        else:
            region = self.edit_region(
                pipe.unet,
                pipe.scheduler,
                latents,
                embeds.to(latents),
                sources.to(latents),
                settings.steps,
                settings.seed + REGION_SEED,
                poll=None if on_step is None else lambda: on_step(0, max(1, int(settings.steps * settings.strength))),
            )
        if not region.any():  # no edit: the input as the autoencoder redraws it, without a UNet step
            if on_step is not None:
                on_step(1, 1)
            decoded = pipe.movq.decode(latents, force_not_quantize=True)["sample"]
            return pipe.image_processor.postprocess(decoded, "pil"), torch.zeros(len(latents), *latents.shape[-2:])
        keep = KeepOutside(region, latents, settings.seed + KEEP_SEED)
        progress = _progress(on_step, max(1, int(settings.steps * settings.strength)))

        def step_end(p, step, timestep, kwargs):
            return progress(p, step, timestep, keep(p, step, timestep, kwargs))

        painted = pipe(
            image=images, strength=settings.strength, height=None, width=None, callback_on_step_end=step_end, **common
        ).images
        return painted, region[:, 0].float().cpu()


REGION_SEED, KEEP_SEED = 12345, 999  # offsets from the decode seed for the region's and the kept latents' noise


def _progress(on_step: Callable[[int, int], None] | None, total: int):
    def callback(pipe, step, timestep, kwargs):
        if on_step is not None:
            on_step(step + 1, total)
        return kwargs

    return callback


def _img2img_class(base):
    """diffusers' Kandinsky 2.2 img2img with one assumption lifted: its ``prepare_latents`` treats a
    4-channel input as latents (Kandinsky's own movq has 4) and re-encodes anything else, so an
    autoencoder with another latent width (the demo's has 8) failed there. Latents of the movq's
    own width are noised exactly as diffusers noises 4-channel ones (same generator draws)."""
    from diffusers.utils.torch_utils import randn_tensor

    class KandinskyImg2Img(base):
        def prepare_latents(self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None):
            if isinstance(image, torch.Tensor) and image.shape[1] == self.movq.config.latent_channels != 4:
                latents = image.to(device=device, dtype=dtype)
                noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
                return self.scheduler.add_noise(latents, noise, timestep)
            return super().prepare_latents(image, timestep, batch_size, num_images_per_prompt, dtype, device, generator)

    return KandinskyImg2Img


class LastEncoding:
    """The movq's ``encode`` remembering its last input and output: every slider move re-runs
    img2img on the same init image, and diffusers encodes it afresh each time (at 512x512 on the
    real Kandinsky that is a whole encoder pass). Only an identical input tensor hits."""

    def __init__(self, encode: Callable):
        self.encode = encode
        self.last: tuple[torch.Tensor, object] | None = None

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        if args or kwargs or torch.is_grad_enabled():
            return self.encode(x, *args, **kwargs)
        if (
            self.last is not None
            and self.last[0].shape == x.shape
            and self.last[0].dtype == x.dtype
            and self.last[0].device == x.device
            and torch.equal(self.last[0], x)
        ):
            return self.last[1]
        out = self.encode(x)
        self.last = (x.detach().clone(), out)
        return out


NEGATIVE_FILE = "negative_image_embeds.safetensors"  # beside a saved pipeline: its guidance negative


def save_folder(out: Path, unet, movq, scheduler, negative_embeds: torch.Tensor) -> None:
    """A ``KandinskyV22Pipeline`` folder plus its negative embedding, written atomically; weights
    in fp16 (half the size; loading casts them back). ``open_decoder`` reads it back."""
    import copy

    from diffusers import KandinskyV22Pipeline
    from safetensors.torch import save_file

    from sae import atomic

    pipe = KandinskyV22Pipeline(unet=copy.deepcopy(unet).half(), scheduler=scheduler, movq=copy.deepcopy(movq).half())
    with atomic.atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, variant=None, safe_serialization=True)
        save_file({"negative_image_embeds": negative_embeds.float().contiguous()}, str(tmp / NEGATIVE_FILE))


def open_decoder(
    source: Path,
    backbone,
    name: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cpu_offload: bool = False,
) -> KandinskyDecoder:
    """A Kandinsky 2.2 pipeline folder: its saved negative embedding when it has one (the demo's),
    else the encoder's embedding of an all-zero image, as Kandinsky's prior makes it."""
    if (Path(source) / NEGATIVE_FILE).is_file():
        from safetensors.torch import load_file

        negative = load_file(str(Path(source) / NEGATIVE_FILE))["negative_image_embeds"]
    else:
        negative = zero_image_embedding(backbone)
    return KandinskyDecoder(source, negative, name=name, device=device, dtype=dtype, cpu_offload=cpu_offload)


ZERO_IMAGE_DIR = "zero-image-embeds"  # in the user cache: one file per encoder's weights


def zero_image_embedding(backbone) -> torch.Tensor:
    """The encoder's embedding [1, e] of an all-zero image. A full ViT-bigG-14 pass takes 6-8 s on
    a CPU, at every load, so it is kept in the user cache under the weights' fingerprint; a cached
    file that does not read back as one finite row of the encoder's width is made again."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from sae import atomic
    from sae.cache import cache_root

    path = cache_root() / ZERO_IMAGE_DIR / f"{backbone.fingerprint}-{backbone.image_size}.safetensors"
    try:
        found = load_file(str(path)).get("embedding")
    except (OSError, SafetensorError, ValueError):
        found = None  # none yet, or damaged: made again below
    if found is not None and found.shape == (1, backbone.embed_dim) and found.isfinite().all():
        return found.float()
    with torch.no_grad():  # not inference mode: the demo decoder's training conditions on it
        blank = torch.zeros(1, 3, backbone.image_size, backbone.image_size, device=backbone.device)
        negative = backbone.encode_image(blank).float().cpu()
    with contextlib.suppress(OSError):  # a read-only or full cache: the next load computes it again
        with atomic.atomic_path(path) as tmp:
            save_file({"embedding": negative.contiguous()}, str(tmp))
    return negative
