"""SAE folders of other tools: sparsify's layout in and out, and hook names to layers.

sae-studio's own folder *is* SAELens' layout (``sae.model``). sparsify (EleutherAI) writes
``cfg.json`` (``k``, ``num_latents``/``expansion_factor``, ``d_in``, ...) and ``sae.safetensors``
with ``encoder.weight [F, D]``, ``encoder.bias [F]``, ``W_dec [F, D]`` and ``b_dec [D]``; it encodes
``topk(relu((x - b_dec) W_enc^T + b_enc))``, the same map as a SAELens TopK SAE.

A folder from either tool names where it was trained by a hook point, which
``sae.hooks.layer_from_hook`` maps to sae-studio's layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from sae import atomic
from sae.errors import UserError
from sae.hooks import layer_from_hook
from sae.model import CFG_NAME, WEIGHTS_NAME, SparseAutoencoder, open_weights, sae_folders_inside
from sae.sae_config import SaeConfig, SaeMetadata, config_size, read_config

SPARSIFY_WEIGHTS = "sae.safetensors"


def detect(folder: str | Path) -> str:
    """'saelens' (sae-studio's own layout too) or 'sparsify'; one sentence otherwise."""
    folder = Path(folder)
    if (folder / WEIGHTS_NAME).is_file():
        return "saelens"
    if (folder / SPARSIFY_WEIGHTS).is_file() and (folder / CFG_NAME).is_file():
        return "sparsify"
    if (folder / CFG_NAME).is_file():
        return "saelens"  # let the SAELens reader name what is missing
    if inside := sae_folders_inside(folder):
        raise UserError(f"{folder} holds SAE folders, not one SAE: {inside}; pass one of them.")
    raise UserError(
        f"{folder} is not an SAE folder: expected cfg.json with sae_weights.safetensors (SAELens, "
        "sae-studio) or sae.safetensors (sparsify)."
    )


def load_sparsify(
    folder: str | Path, layer: int | None = None, device: str | torch.device = "cpu"
) -> SparseAutoencoder:
    """A sparsify SAE as a project SAE. The layer comes from ``layer`` or the folder's name (the
    hookpoint sparsify names it after); when neither says, one sentence asks for it."""
    folder = Path(folder)
    raw = read_config(folder / CFG_NAME)
    if raw.get("activation", "topk") != "topk" or raw.get("transcode") or raw.get("skip_connection"):
        raise UserError(
            f"{folder} is a sparsify {'transcoder' if raw.get('transcode') else 'coder'} with activation "
            f"'{raw.get('activation', 'topk')}'{' and a skip connection' if raw.get('skip_connection') else ''}; "
            "sae-studio edits plain TopK SAEs."
        )
    names = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
    weights = folder / SPARSIFY_WEIGHTS
    with open_weights(weights) as f:  # shapes from the header, before any memory is taken
        shapes = {name: tuple(f.get_slice(name).get_shape()) for name in names if name in f.keys()}
        dtypes = {name: f.get_slice(name).get_dtype() for name in shapes}
    missing = [name for name in names if name not in shapes]
    if missing:
        raise UserError(f"{weights} has no '{missing[0]}'; it is not a complete sparsify SAE.")
    if not_weights := [name for name, dtype in dtypes.items() if not dtype.startswith(("F", "BF"))]:
        raise UserError(f"{weights}: '{not_weights[0]}' holds {dtypes[not_weights[0]]} values, not weights.")
    if len(shapes["encoder.weight"]) != 2:
        raise UserError(f"{weights}: 'encoder.weight' has shape {shapes['encoder.weight']}; it is not a sparsify SAE.")
    d_sae, d_in = shapes["encoder.weight"]
    expected = {"encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if config_size(raw.get("d_in", d_in), "d_in", folder / CFG_NAME) != d_in or any(
        shapes[name] != shape for name, shape in expected.items()
    ):
        raise UserError(f"{folder}: the weights' shapes do not match its cfg.json; the folder is damaged.")
    if layer is None:
        layer = layer_from_hook(folder.name)
    if layer is None:
        raise UserError(
            f"Cannot tell which layer the sparsify SAE in {folder} was trained on (its folder name "
            f"'{folder.name}' is not a hookpoint such as layers.12); pass the layer explicitly."
        )
    cfg = SaeConfig(d_in=d_in, d_sae=d_sae, arch="topk", k=config_size(raw.get("k", 32), "k", folder / CFG_NAME))
    sae = SparseAutoencoder.allocate(cfg, SaeMetadata(layer=layer, token_set="all"), folder)
    params = {"encoder.weight": sae.W_enc_T, "encoder.bias": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    with open_weights(weights) as f, torch.no_grad():  # one tensor at a time: a wide SAE is not held twice
        for name, param in params.items():
            t = f.get_tensor(name)
            param.copy_(t)
            del t
    sae.check_finite(folder)
    return sae.to(device)


def save_sparsify(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write ``sae`` (TopK) in sparsify's layout, readable by ``sparsify.SparseCoder.load_from_disk``."""
    if sae.cfg.arch != "topk":
        raise UserError("sparsify reads TopK SAEs only; this SAE is a ReLU SAE (export it as SAELens instead).")
    folder = Path(folder)
    copy = sae.folded_copy()
    tensors = {
        "encoder.weight": copy.W_enc_T.detach().float().contiguous().cpu(),
        "encoder.bias": copy.b_enc.detach().float().contiguous().cpu(),
        "W_dec": copy.W_dec.detach().float().contiguous().cpu(),
        "b_dec": copy.b_dec.detach().float().contiguous().cpu(),
    }
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, sae.d_sae // sae.d_in),
        "normalize_decoder": True,
        "num_latents": sae.d_sae,
        "k": sae.cfg.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_in,
    }
    with atomic.atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / SPARSIFY_WEIGHTS))
        (tmp / CFG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    return folder


def load_any(folder: str | Path, layer: int | None = None, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """An SAE folder of any supported layout (SAELens' and sae-studio's, or sparsify's)."""
    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() and (folder / SPARSIFY_WEIGHTS).is_file():
        return load_sparsify(folder, layer, device)
    sae = SparseAutoencoder.load(folder, device)
    if layer is not None:
        sae.metadata.layer = layer
    return sae
