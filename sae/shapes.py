"""The real encoders and decoders at their real shapes, with random weights.

Weights cannot always be downloaded (tests, benches, a machine off the network), but shapes can
be built: open_clip ships the configs of ViT-bigG-14 and ViT-H-14, and ``sae/decoders/configs/``
holds the Kandinsky 2.2 decoder's. ``factor`` divides every width while the blocks, the
downsamplings and the number of attention heads stay as they are (the *real topology*); 1 is
the full size. Folders are written in the layouts the real models come in, so they load through
the same code (``sae.backbone.load_backbone``, ``sae.decoders.registry.load_decoder``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from sae.errors import UserError

CONFIGS = Path(__file__).parent / "decoders" / "configs"


def decoder_config(decoder: str, part: str) -> dict[str, Any]:
    """The real config of one part (``unet``, ``movq``, ``scheduler``) of a decoder in ``CONFIGS``."""
    return json.loads((CONFIGS / decoder / f"{part}.json").read_text())


def _divide(value: int, factor: int, what: str) -> int:
    if value % factor:
        raise UserError(f"{what} ({value}) cannot be divided by {factor}; pick a factor that divides it.")
    return value // factor


def clip_config(name: str, factor: int = 1) -> dict[str, Any]:
    """open_clip's config of ``name`` with every tower's width divided by ``factor``: same layers,
    same heads (narrower ones), same patches and image size, same embedding width."""
    import open_clip

    cfg = copy.deepcopy(open_clip.get_model_config(name))
    if cfg is None:
        raise UserError(f"open_clip knows no model named {name}.")
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    v["width"] = _divide(v["width"], factor, f"{name}'s vision width")
    v["head_width"] = _divide(v.get("head_width", 64), factor, f"{name}'s vision head width")
    t["width"] = _divide(t["width"], factor, f"{name}'s text width")
    _divide(t["width"], t.get("heads", 8), f"{name}'s narrowed text width over its heads")
    return cfg


def save_clip(name: str, folder: str | Path, factor: int = 1, seed: int = 0) -> Path:
    """``name`` narrowed by ``factor``, random weights, in open_clip's ``local-dir:`` layout."""
    import open_clip

    from sae.backbone import save_local_dir

    cfg = clip_config(name, factor)
    torch.manual_seed(seed)
    return save_local_dir(open_clip.CLIP(**cfg), cfg, Path(folder))


def kandinsky_parts(factor: int = 1, embed_dim: int = 1280) -> dict[str, dict[str, Any]]:
    """The Kandinsky 2.2 decoder's UNet, movq and scheduler configs, narrowed by ``factor``.

    The UNet keeps its head count (64-wide heads become 64/factor wide) and the channels each
    group norm spans; the movq is narrowed at most 4-fold, because its spatial norms always have
    32 groups. ``embed_dim`` is the image embedding it paints (ViT-bigG-14's 1280 by default)."""
    unet, movq = decoder_config("kandinsky-2.2", "unet"), decoder_config("kandinsky-2.2", "movq")
    unet["block_out_channels"] = [_divide(c, factor, "a UNet width") for c in unet["block_out_channels"]]
    unet["attention_head_dim"] = _divide(unet["attention_head_dim"], factor, "the UNet's head width")
    unet["cross_attention_dim"] = _divide(unet["cross_attention_dim"], factor, "the UNet's context width")
    unet["norm_num_groups"] = _divide(unet["norm_num_groups"], factor, "the UNet's norm groups")
    unet["encoder_hid_dim"] = embed_dim
    m = min(factor, 4)
    movq["block_out_channels"] = [_divide(c, m, "a movq width") for c in movq["block_out_channels"]]
    movq["norm_num_groups"] = _divide(movq["norm_num_groups"], m, "the movq's norm groups")
    return {"unet": unet, "movq": movq, "scheduler": decoder_config("kandinsky-2.2", "scheduler")}


def save_kandinsky(
    folder: str | Path, factor: int = 1, embed_dim: int = 1280, seed: int = 0, latent_size: int | None = None
) -> Path:
    """A Kandinsky 2.2 decoder folder in the hub's layout (``unet/``, ``movq/``, ``scheduler/``,
    ``model_index.json``), narrowed by ``factor``, random weights. ``latent_size`` replaces the
    native 64 (512 pixels), which sets only the size it paints at, for tests."""
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    parts = kandinsky_parts(factor, embed_dim)
    if latent_size is not None:
        parts["unet"]["sample_size"] = latent_size
    torch.manual_seed(seed)
    pipe = KandinskyV22Pipeline(
        unet=UNet2DConditionModel.from_config(parts["unet"]),
        movq=VQModel.from_config(parts["movq"]),
        scheduler=DDPMScheduler.from_config(parts["scheduler"]),
    )
    pipe.save_pretrained(Path(folder), safe_serialization=True)
    return Path(folder)


def unclip_parts(factor: int = 1, embed_dim: int = 1024) -> dict[str, dict[str, Any]]:
    """SD 2.1 unCLIP's configs narrowed by ``factor``: the UNet and VAE keep their head counts and
    the channels each group norm spans; the text and image towers keep their depth and heads.
    ``embed_dim`` is the image embedding it paints (ViT-H-14's 1024 by default)."""
    parts = {
        p: decoder_config("sd-2.1-unclip", p)
        for p in ("unet", "vae", "scheduler", "image_noising_scheduler", "image_normalizer", "text_encoder")
    }
    parts["image_encoder"] = decoder_config("sd-2.1-unclip", "image_encoder")
    unet, vae, text, image = parts["unet"], parts["vae"], parts["text_encoder"], parts["image_encoder"]
    unet["block_out_channels"] = [_divide(c, factor, "a UNet width") for c in unet["block_out_channels"]]
    for c, heads in zip(unet["block_out_channels"], unet["attention_head_dim"], strict=True):
        _divide(c, heads, "a narrowed UNet width over its heads")
    unet["norm_num_groups"] = _divide(unet["norm_num_groups"], factor, "the UNet's norm groups")
    unet["projection_class_embeddings_input_dim"] = 2 * embed_dim  # the embedding beside its noise level
    vae["block_out_channels"] = [_divide(c, factor, "a VAE width") for c in vae["block_out_channels"]]
    vae["norm_num_groups"] = _divide(vae["norm_num_groups"], factor, "the VAE's norm groups")
    for tower, what in ((text, "text"), (image, "image")):
        tower["hidden_size"] = _divide(tower["hidden_size"], factor, f"the {what} tower's width")
        tower["intermediate_size"] = _divide(tower["intermediate_size"], factor, f"the {what} tower's MLP")
        _divide(tower["hidden_size"], tower["num_attention_heads"], f"the {what} tower's width over its heads")
    unet["cross_attention_dim"] = text["hidden_size"]
    image["projection_dim"] = parts["image_normalizer"]["embedding_dim"] = embed_dim
    return parts


def write_char_tokenizer(folder: str | Path):
    """A character-level CLIPTokenizer written from scratch (CLIP's BPE vocabulary is not stored
    here): every byte symbol, with and without the end-of-word mark, and the two special tokens."""
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in bytes_to_unicode().values():
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def save_unclip(
    folder: str | Path, factor: int = 1, embed_dim: int = 1024, seed: int = 0, latent_size: int | None = None
) -> Path:
    """An SD 2.1 unCLIP img2img folder in the hub's layout, narrowed by ``factor``, random weights.
    ``latent_size`` replaces the native 96 (768 pixels), which sets only the size it paints at, for
    tests that cannot afford 768-pixel decodes."""
    import shutil
    import tempfile

    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        PNDMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    parts = unclip_parts(factor, embed_dim)
    if latent_size is not None:
        parts["unet"]["sample_size"], parts["vae"]["sample_size"] = latent_size, latent_size * 8
    torch.manual_seed(seed)
    tokens = Path(tempfile.mkdtemp())
    try:
        size = parts["image_encoder"]["image_size"]
        pipe = StableUnCLIPImg2ImgPipeline(
            feature_extractor=CLIPImageProcessor(crop_size=size, size=size),
            image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**parts["image_encoder"])),
            image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
            image_noising_scheduler=DDPMScheduler.from_config(parts["image_noising_scheduler"]),
            tokenizer=write_char_tokenizer(tokens),
            text_encoder=CLIPTextModel(CLIPTextConfig(**parts["text_encoder"])),
            unet=UNet2DConditionModel.from_config(parts["unet"]),
            scheduler=PNDMScheduler.from_config(parts["scheduler"]),
            vae=AutoencoderKL.from_config(parts["vae"]),
        )
        pipe.save_pretrained(Path(folder), safe_serialization=True)
    finally:
        shutil.rmtree(tokens, ignore_errors=True)
    return Path(folder)
