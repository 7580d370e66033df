"""MSAE's checkpoints (code ``WolodjaZ/MSAE``): Matryoshka SAEs on CLIP image embeddings.

A pickled ``{"model": state_dict, "mean_center": [D], "scaling_factor", "target_norm"}`` whose
file NAME holds the configuration:
``{n_latents}_{n_inputs}_{activation}[_k][_nesting][_RW|_UW]_{tied}_{normalize}_{latent_soft_cap}_{dataset}.pth``.
The state dict has ``pre_bias [D]``, ``encoder [D, F]``, ``latent_bias [F]`` and ``decoder [F, D]``
(absent when tied: the encoder's transpose). Inputs are ``z = (x - mean_center) * scaling_factor``;
``f = act((z - pre_bias) encoder + latent_bias)``, ``z_hat = f decoder + pre_bias``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sae.errors import UserError
from sae.hooks import EMBEDDING
from sae.model import SparseAutoencoder
from sae.published.layout import NEGATIVE_TOPK_NOTE, Published
from sae.published.pickles import as_weights
from sae.sae_config import SaeConfig, SaeMetadata

LAYOUT = "MSAE"
# MSAE's activation names -> sae-studio's: TopK keeps the k largest pre-activations, then ReLU
ACTIVATIONS = {"ReLU": "relu", "TopKReLU": "topk", "TopK": "topk"}
NAME_FORM = "{n_latents}_{n_inputs}_{activation}_..._{tied}_{normalize}_{soft_cap}_{dataset}.pth"


class MsaeName(NamedTuple):
    n_latents: int
    n_inputs: int
    activation: str
    k: int
    tied: bool
    normalize: bool
    soft_cap: float


def is_msae(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "scaling_factor" in obj


def parse_name(path: Path) -> MsaeName:
    """The configuration MSAE writes into a checkpoint's file name."""
    words = path.stem.split("_")
    try:
        n_latents, n_inputs, activation = int(words[0]), int(words[1]), words[2]
        rest = words[3:]
        k = int(rest.pop(0)) if "TopK" in activation else 0
        # the ReLU SAE's L1 weight, a Matryoshka nesting size and _RW/_UW come before the flags
        while rest[0] not in ("True", "False"):
            rest.pop(0)
        soft_cap = float(rest[2])
        if not math.isfinite(soft_cap):
            raise ValueError(soft_cap)
        return MsaeName(n_latents, n_inputs, activation, k, rest[0] == "True", rest[1] == "True", soft_cap)
    except (IndexError, ValueError):
        raise UserError(
            f"{path.name} does not carry MSAE's configuration in its name ({NAME_FORM}); "
            "keep the name the checkpoint was saved under."
        ) from None


def read_msae(path: Path, obj: dict[str, Any], layer: int | None) -> Published:
    name = parse_name(path)
    if name.activation not in ACTIVATIONS:
        raise UserError(f"{path.name} uses MSAE's {name.activation} activation; sae-studio edits ReLU and TopK SAEs.")
    if name.normalize:
        raise UserError(
            f"{path.name} standardises each input by its own mean and deviation, which no SAE weights can hold; "
            "sae-studio cannot reproduce its activations."
        )
    if name.soft_cap > 0:
        raise UserError(
            f"{path.name} squashes its codes through a tanh soft cap ({name.soft_cap:g}), which a ReLU or TopK SAE "
            "cannot express; sae-studio cannot reproduce its activations."
        )
    state = obj["model"]

    def weights(holder: dict[str, Any], field: str) -> torch.Tensor:
        if not isinstance(holder.get(field), torch.Tensor):
            raise UserError(f"{path.name} lacks MSAE's tensor '{field}'; it is not a complete MSAE.")
        return as_weights(holder[field], field, path.name)

    encoder = weights(state, "encoder")
    decoder = encoder.T if name.tied else weights(state, "decoder")
    pre_bias, latent_bias = weights(state, "pre_bias"), weights(state, "latent_bias")
    mean = weights(obj, "mean_center") if "mean_center" in obj else torch.zeros(1)  # absent: no centring
    scale = obj["scaling_factor"]
    if isinstance(scale, torch.Tensor) and scale.numel() == 1:
        scale = scale.item()
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise UserError(f"{path.name} gives its scaling_factor as {type(scale).__name__}, not a number; it is damaged.")
    d_in, d_sae = name.n_inputs, name.n_latents
    if encoder.shape != (d_in, d_sae) or decoder.shape != (d_sae, d_in) or latent_bias.shape != (d_sae,):
        raise UserError(f"{path.name}: its tensors' shapes do not match the {d_sae} x {d_in} its name gives.")
    if pre_bias.shape != (d_in,) or mean.numel() not in (1, d_in) or not scale > 0:
        raise UserError(f"{path.name}: its biases or input statistics do not fit its width {d_in}; it is damaged.")
    k = name.k if name.activation != "ReLU" else 32
    if name.activation != "ReLU" and not 0 < k <= d_sae:
        raise UserError(f"{path.name} names TopK with k={k}, not between 1 and its {d_sae} latents.")
    sae = SparseAutoencoder(
        SaeConfig(d_in=d_in, d_sae=d_sae, arch=ACTIVATIONS[name.activation], k=k),
        SaeMetadata(layer=EMBEDDING if layer is None else layer, token_set="all"),
    )
    with torch.no_grad():
        sae.W_enc_T.copy_(encoder.T)
        sae.b_enc.copy_(latent_bias)
        sae.W_dec.copy_(decoder)
        sae.b_dec.copy_(pre_bias)
    sae.fold_input_affine(mean.expand(d_in), scale)
    notes = (f"MSAE's plain {NEGATIVE_TOPK_NOTE}.",) if name.activation == "TopK" else ()
    return Published(LAYOUT, sae, notes)
