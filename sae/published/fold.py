"""Writing another project's encode formula into sae-studio's one map.

sae-studio encodes ``f = act((x - b_dec) W_enc + b_enc)`` and decodes ``f W_dec + b_dec`` on raw
inputs ``x``. A layout that does not subtract ``b_dec``, or that first normalises its inputs
affinely, has the same features once its weights are rewritten by these two identities.
"""

from __future__ import annotations

import torch

from sae.model import SparseAutoencoder


@torch.no_grad()
def fold_unsubtracted_b_dec(sae: SparseAutoencoder) -> None:
    """For a layout encoding ``act(x W_enc + b_enc)``: relu(W x + b) = relu(W (x - b_dec) + b + W b_dec)."""
    sae.b_enc.add_(sae.W_enc_T @ sae.b_dec)


@torch.no_grad()
def fold_input_affine(sae: SparseAutoencoder, mean: torch.Tensor, scale: float) -> None:
    """For an SAE that reads ``z = (x - mean) * scale``: afterwards it reads ``x`` itself.

    act(((x - m) s - b) W + c) = act((x - (m + b / s)) (s W) + c), and (f W_dec + b) / s + m
    = f (W_dec / s) + (m + b / s): so W_enc *= s, W_dec /= s, b_dec = m + b_dec / s.
    """
    sae.W_enc_T.mul_(scale)
    sae.W_dec.div_(scale)
    sae.b_dec.copy_(mean.to(sae.b_dec) + sae.b_dec / scale)
