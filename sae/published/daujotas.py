"""Daujotas' Kandinsky 2.2 embedding SAE (hub ``gytdau/clip-sae-128``, ``sparse_autoencoder_128.pth``).

A state dict of ``encoder.weight [F, D]``, ``enc_bias [F]``, ``decoder.weight [D, F]``,
``dec_bias [D]`` (fp16) with ``f = relu(encoder(x) + enc_bias)`` and ``x_hat = decoder(f) + dec_bias``;
the decoder bias is not subtracted before encoding. It reads ViT-bigG-14's 1280-d image embedding,
which Kandinsky 2.2 paints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sae.errors import UserError
from sae.hooks import EMBEDDING
from sae.model import SparseAutoencoder
from sae.published.pickles import as_weights
from sae.sae_config import SaeConfig, SaeMetadata

LAYOUT = "Kandinsky 2.2 embedding SAE (gytdau/clip-sae-128)"
KEYS = ("encoder.weight", "enc_bias", "decoder.weight", "dec_bias")
ENCODER = "ViT-bigG-14:laion2b_s39b_b160k"  # Kandinsky 2.2's image encoder, 1280-d


def is_daujotas(t: dict[str, torch.Tensor]) -> bool:
    return all(k in t for k in KEYS)


def read_daujotas(path: Path, t: dict[str, torch.Tensor], layer: int | None) -> SparseAutoencoder:
    enc, b_enc, dec, b_dec = (as_weights(t[k], k, path) for k in KEYS)
    if enc.dim() != 2 or dec.shape != enc.T.shape or b_enc.shape != enc.shape[:1] or b_dec.shape != enc.shape[1:]:
        raise UserError(f"{path}: the shapes of its tensors do not fit together; the file is damaged.")
    d_sae, d_in = enc.shape
    sae = SparseAutoencoder(
        SaeConfig(d_in=d_in, d_sae=d_sae, arch="relu"),
        SaeMetadata(
            backbone=ENCODER if d_in == 1280 else "",
            layer=EMBEDDING if layer is None else layer,
            token_set="all",
        ),
    )
    with torch.no_grad():
        sae.W_enc_T.copy_(enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(dec.T)
        sae.b_dec.copy_(b_dec)
    sae.fold_unsubtracted_b_dec()
    return sae
