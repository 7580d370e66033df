"""Quality figures of an SAE: the splice cosine (which needs the encoder) and how often each latent fires."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sae.backbone import Backbone
from sae.errors import UserError
from sae.images import load_image
from sae.model import SparseAutoencoder


@torch.inference_mode()
def splice_cosine(backbone: Backbone, sae: SparseAutoencoder, pixels: torch.Tensor, token_set: str = "all") -> float:
    """Mean cosine between the final image embedding with and without the SAE spliced in.

    The SAE's input (the residual entering block ``backbone.layer``, or a sublayer's output) is
    replaced by its SAE reconstruction at the tokens of ``token_set`` (the others pass through),
    then the rest of the encoder runs.
    """
    resid, x = backbone.split(pixels)
    clean = backbone.suffix(resid)
    positions = backbone.token_positions(token_set)
    spliced = resid.clone()
    error = sae(x[:, positions].float()).reconstruction.to(resid.dtype) - x[:, positions]
    spliced[:, positions] += error
    return float(F.cosine_similarity(backbone.suffix(spliced), clean, dim=-1).mean())


@torch.inference_mode()
def firing_rates(sae: SparseAutoencoder, store, batch: int = 32_768) -> torch.Tensor:
    """[d_sae] fraction of the tokens of an activations store on which each latent fires."""
    counts = torch.zeros(sae.d_sae, dtype=torch.float64)
    for i in range(len(store.manifest.shards)):
        shard = store.shard(i)
        for start in range(0, len(shard), batch):
            x = torch.from_numpy(np.array(shard[start : start + batch], dtype=np.float32)).to(sae.W_dec.device)
            f = sae.encode(x)
            counts += (f > 0).sum(0).double().cpu()
    return (counts / store.rows).float()


def load_pixels(backbone: Backbone, paths: Sequence[Path], limit: int = 64) -> torch.Tensor:
    """Preprocessed pixels [N, 3, H, W] of up to ``limit`` readable images among ``paths``."""
    out = []
    for p in paths:
        if len(out) == limit:
            break
        try:
            out.append(backbone.preprocess(load_image(p)))
        except UserError:
            continue
    if not out:
        raise UserError("None of the evaluation images could be read.")
    return torch.stack(out).to(backbone.device)
