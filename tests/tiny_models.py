"""Tiny random open_clip models in the shapes of real configs, saved in the hub's on-disk layout."""

from __future__ import annotations

import copy
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
