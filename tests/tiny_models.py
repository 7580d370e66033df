"""Tiny random open_clip models in the shapes of real configs, saved in the hub's on-disk layout."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import open_clip
import torch

from sae.backbone import save_local_dir


def tiny_clip_config(name: str, width: int = 32, image_size: int = 56) -> dict:
    """open_clip's built-in config for ``name`` with every tower narrowed, structure kept.

    Layer count, patch size, MLP ratio, pooling and norm placement stay as in the real model;
    widths, heads and the image size shrink so that the model builds in a fraction of a second.
    """
    cfg = copy.deepcopy(open_clip.get_model_config(name))
    v = cfg["vision_cfg"]
    v["width"] = width
    v["head_width"] = width // 2
    v["image_size"] = image_size
    t = cfg["text_cfg"]
    t.update(width=width, heads=2, layers=2)
    cfg["embed_dim"] = 24
    return cfg


def save_tiny_clip(name: str, folder: Path, seed: int = 0, **kw) -> Path:
    cfg = tiny_clip_config(name, **kw)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    # A random init leaves some parameters at exact zeros or ones; perturb everything so the
    # equivalence checks see every parameter at work.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return save_local_dir(model, cfg, folder)


def build_quick_demo(root: Path, n_images: int) -> tuple[Path, Path]:
    """--quick demo CLIP + SAE under ``root/demo``, a tiny random decoder of the demo's shape
    under ``root/decoder``, and ``n_images`` world scenes under ``root/images``."""
    import os

    from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel

    from sae.backbone import load_backbone
    from sae.demo.build import build
    from sae.demo.decoder import (
        blank_embedding,
        movq_config,
        save_pipeline,
        scheduler_config,
        unet_config,
    )
    from sae.demo.sae_recipe import write_world_images

    os.environ["SAE_STUDIO_CACHE"] = str(root / "cache")
    os.environ["SAE_STUDIO_WORK"] = str(root / "work")
    build(("clip", "sae"), out=root / "demo", quick=True)
    # The build indexes its SAE over its own scenes, as the shipped one is; the tests index it
    # over the scenes they hand it (an index covers one folder).
    shutil.rmtree(root / "demo" / "sae" / "index")
    (root / "demo" / "sae" / "labels.json").unlink()
    bb = load_backbone(str(root / "demo" / "clip"))
    torch.manual_seed(0)
    save_pipeline(root / "decoder", UNet2DConditionModel(**unet_config(bb.embed_dim, quick=True)),
                  VQModel(**movq_config(quick=True)), DDIMScheduler(**scheduler_config()), blank_embedding(bb))
    return root, write_world_images(root / "images", n_images, seed=9)
