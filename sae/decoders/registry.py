"""Decoders by name: ``demo``, ``kandinsky-2.2``, or a local folder holding a Kandinsky 2.2 pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from sae.backbone import Backbone
from sae.decoders.kandinsky import KandinskyDecoder
from sae.errors import UserError

NAMES = ("demo", "kandinsky-2.2", "sd21-unclip")
# What the hub decoders paint: (embedding width, the encoder that makes it). Checked before any
# download, so pairing a decoder with the wrong encoder costs one sentence, not gigabytes.
PAIRS = {"kandinsky-2.2": (1280, "ViT-bigG-14:laion2b_s39b_b160k"), "sd21-unclip": (1024, "ViT-H-14:laion2b_s32b_b79k")}


def check_pair(name: str, backbone: Backbone) -> None:
    if name in PAIRS and backbone.embed_dim != PAIRS[name][0]:
        width, encoder = PAIRS[name]
        raise UserError(
            f"The {name} decoder paints {width}-d {encoder} embeddings, but this encoder makes "
            f"{backbone.embed_dim}-d ones; load an SAE trained on {encoder} first."
        )


@torch.inference_mode()
def zero_image_embedding(backbone: Backbone) -> torch.Tensor:
    """The encoder's embedding of an all-zero image: Kandinsky's negative embedding."""
    return backbone.encode_image(torch.zeros(1, 3, backbone.image_size, backbone.image_size, device=backbone.device))


def download_note(name: str) -> str | None:
    """What a hub decoder will download, if it is not in the cache yet (None otherwise)."""
    from sae.recipes import RECIPES, decoder_cached, estimate

    recipe = RECIPES.get(name)
    if recipe is None:
        return None
    try:
        if decoder_cached(recipe.decoder_repo):
            return None
    except Exception:  # a cache that cannot be read is treated as empty
        pass
    return estimate(recipe)


def load_decoder(name: str, backbone: Backbone, device: str | torch.device = "cpu", fp16: bool = False,
                 cpu_offload: bool = False, on_download: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> KandinskyDecoder:
    """``on_download(done_bytes, total_bytes)`` follows a hub decoder's first download, which
    ``should_stop()`` can cancel (``sae.download.DownloadCancelled``)."""
    if name == "demo":
        from sae.decoders.demo import load_demo_decoder

        return load_demo_decoder(device=str(device))
    check_pair(name, backbone)
    dtype = torch.float16 if fp16 else torch.float32
    if name in ("kandinsky-2.2", "sd21-unclip"):
        from sae.download import hub_snapshot
        from sae.recipes import RECIPES

        recipe = RECIPES[name]
        local = hub_snapshot(recipe.decoder_repo, int(recipe.decoder_gb * 1e9), on_download, should_stop)
        if name == "kandinsky-2.2":
            return KandinskyDecoder(local, zero_image_embedding(backbone).float().cpu(), name=name,
                                    device=device, dtype=dtype, cpu_offload=cpu_offload)
        from sae.decoders.unclip import UnclipDecoder

        return UnclipDecoder(local, name=name, device=device, dtype=dtype, cpu_offload=cpu_offload)
    path = Path(name)
    if (path / "model_index.json").is_file() and "StableUnCLIP" in (path / "model_index.json").read_text():
        from sae.decoders.unclip import UnclipDecoder

        return UnclipDecoder(path, name=path.name, device=device, dtype=dtype)
    if (path / "model_index.json").is_file():
        neg_file = path / "negative_image_embeds.safetensors"
        if neg_file.is_file():
            from safetensors.torch import load_file

            negative = load_file(str(neg_file))["negative_image_embeds"]
        else:
            negative = zero_image_embedding(backbone).float().cpu()
        return KandinskyDecoder(path, negative, name=path.name, device=device, dtype=dtype)
    raise UserError(f"Decoder '{name}' is unknown; use {', '.join(NAMES)} or a folder with a saved pipeline.")
