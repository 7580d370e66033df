"""Input statistics a published SAE was trained with but its file does not hold (saev's early files).

saev's data loader fed its SAEs ``(x - mean) / scalar`` with ``mean`` the activations' mean and
``scalar`` the mean norm of ``x - mean`` over sqrt(D). Both are estimated here from the user's
pictures at the SAE's layer, then folded into the weights so the SAE reads raw activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from sae.activations import encode_images
from sae.backbone import Backbone
from sae.errors import UserError
from sae.images import find_images
from sae.published.layout import Published

MAX_IMAGES = 1000  # enough for a mean and a mean norm to settle to a fraction of a percent
MAX_ROWS = 200_000  # token rows kept for the norm (the mean uses every row)


def input_statistics(
    backbone: Backbone,
    images: str | Path,
    token_set: str = "all",
    batch_size: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, float, int]:
    """(mean [D], saev's scalar, pictures read) of the activations at ``backbone``'s layer."""
    paths = find_images(images)[:MAX_IMAGES]
    if not paths:
        raise UserError(f"{images} holds no pictures to estimate the SAE's input statistics from.")
    positions = backbone.token_positions(token_set)
    sources = [p.name for p in paths]
    total, count, kept, skipped = torch.zeros(backbone.width, dtype=torch.float64), 0, [], []
    for start in range(0, len(paths), batch_size):
        which = range(start, min(start + batch_size, len(paths)))
        before = len(skipped)  # an unreadable file among many pictures does not spoil the estimate
        batch = encode_images(backbone, paths, sources, which, positions, "fp32", skipped)
        if batch is not None:
            rows = torch.from_numpy(batch)
            total += rows.sum(0, dtype=torch.float64)
            count += len(rows)
            per_picture = len(rows) / (len(which) - (len(skipped) - before))
            kept.append(rows[:: math.ceil(per_picture * len(paths) / MAX_ROWS)])  # about MAX_ROWS in all
        if on_progress:
            on_progress(which.stop, len(paths))
    read = len(paths) - len(skipped)
    if not read:
        raise UserError(f"None of the pictures in {images} could be read.")
    mean = (total / count).float()
    scalar = torch.linalg.vector_norm(torch.cat(kept) - mean, dim=1).mean().item() / math.sqrt(backbone.width)
    return mean, scalar, read


def apply_statistics(published: Published, backbone: Backbone, images: str | Path, **kwargs) -> str:
    """Estimate the missing input statistics, fold them into ``published.sae``, and return the
    sentence that tells the user so (also recorded in the SAE's metadata)."""
    sae = published.sae
    mean, scalar, read = input_statistics(backbone, images, sae.metadata.token_set, **kwargs)
    sae.fold_input_affine(mean, 1.0 / scalar)
    sae.metadata.imported["normalisation"] = {
        "estimated_from": str(images),
        "pictures": read,
        "mean_norm": round(mean.norm().item(), 6),
        "scalar": round(scalar, 6),
    }
    return (
        f"{published.layout} normalised its inputs with a mean and scale it did not save; they were estimated from "
        f"{read} pictures in {images} (recorded in cfg.json), so its activations follow those pictures' statistics."
    )
