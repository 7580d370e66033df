"""saev's ``sae.pt`` (code ``OSU-NLP-Group/saev``, hub e.g. ``osunlp/SAE_CLIP_24K_ViT-B-16_IN1K``).

One JSON header line, then ``torch.save(state_dict)`` bytes with ``W_enc [D, F]``, ``b_enc``,
``W_dec [F, D]``, ``b_dec``. Two generations:

- early files (header = the config itself with ``d_vit``, or ``"schema": 1``) encode
  ``relu((z - b_dec) W_enc + b_enc)`` on inputs their data loader normalised as
  ``z = (x - mean) / scalar`` (scalar: the mean norm of ``x - mean`` over sqrt(D)); those statistics
  were never saved, so they are estimated from pictures the user names (``sae.published.statistics``);
- files of schema 2 and later (saev after 2025-07-31) encode ``act(x W_enc + b_enc)`` on raw inputs.

The header names no encoder or layer: saev hooks the output of block N, sae-studio's layer N + 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sae import atomic
from sae.errors import UserError
from sae.model import SparseAutoencoder
from sae.published.layout import NEGATIVE_TOPK_NOTE, Published
from sae.published.pickles import as_weights, safe_load, tensor_dict
from sae.sae_config import SaeConfig, SaeMetadata, whole_number

LAYOUT = "saev"
KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")
HEADER_LIMIT = 1 << 20  # a header is a few hundred bytes; a longer first line is not saev's


def _split(path: Path, rest: bool) -> tuple[dict[str, Any], bytes] | None:
    """(header, the pickle's bytes when ``rest``) when ``path`` is a saev file, else None."""
    with open(path, "rb") as fd:
        if fd.read(1) != b"{":
            return None
        fd.seek(0)
        try:
            header = atomic.parse_json(fd.readline(HEADER_LIMIT))
        except ValueError:
            return None
        return (header, fd.read() if rest else b"") if isinstance(header, dict) else None


def header_only(path: Path) -> dict[str, Any] | None:
    """The header when ``path`` is a saev file (its first line a JSON object), else None."""
    found = _split(path, rest=False)
    return found[0] if found else None


def is_early(header: dict[str, Any]) -> bool:
    """Files before schema 2 subtract b_dec and read inputs normalised by statistics not saved."""
    return header.get("schema") in (None, 1)


def read_header(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """(header, the pickle's bytes) when ``path`` is a saev file, else None: one read of the file."""
    return _split(path, rest=True)


def _activation(header: dict[str, Any], cfg: dict[str, Any]) -> tuple[str, int]:
    """(saev's activation class name, its top_k or 0) from any header generation."""
    if "schema" not in header:
        return "Relu", 0
    if header.get("cls") in ("Relu", "TopK", "BatchTopK"):  # schema 1, first form
        return header["cls"], whole_number(cfg.get("top_k", 32)) or 0
    act = cfg.get("activation") or {"cls": "Relu", "params": {}}
    if not isinstance(act, dict):
        return str(act), 0
    params = act.get("params") if isinstance(act.get("params"), dict) else {}
    return str(act.get("cls", "Relu")), whole_number(params.get("top_k")) or 0


def read_saev(path: Path, header: dict[str, Any], data: bytes, layer: int | None) -> Published:
    schema = header.get("schema")
    if schema is not None and not isinstance(schema, int):
        raise UserError(f"{path} has a saev header with an unknown schema {schema!r}.")
    cfg = header if schema is None else header.get("cfg")
    cfg = cfg if isinstance(cfg, dict) else {}
    name, k = _activation(header, cfg)
    if name == "BatchTopK":
        raise UserError(
            f"{path} is a saev SAE with the BatchTopK activation, which thresholds against its whole training batch; "
            "sae-studio edits ReLU and TopK SAEs."
        )
    if name not in ("Relu", "TopK"):
        raise UserError(f"{path} is a saev SAE with the activation {name!r}; sae-studio edits ReLU and TopK SAEs.")
    if layer is None:
        raise UserError(
            f"{path} is a saev SAE, whose file does not say which layer it reads: pass --layer L "
            "(saev's layer N, the output of block N, is --layer N+1) and --model."
        )
    t = tensor_dict(safe_load(path, data), path)
    missing = [key for key in KEYS if key not in t]
    if missing:
        raise UserError(f"{path} has no '{missing[0]}'; it is not a complete saev SAE.")
    w_enc, b_enc, w_dec, b_dec = (as_weights(t[key], key, path) for key in KEYS)
    d_in, d_sae = w_enc.shape if w_enc.dim() == 2 else (0, 0)
    if w_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise UserError(f"{path}: the shapes of its tensors do not fit together; the file is damaged.")
    if name == "TopK" and not 0 < k <= d_sae:
        raise UserError(f"{path} says TopK but gives no top_k between 1 and {d_sae}.")
    sae = SparseAutoencoder(
        SaeConfig(d_in=d_in, d_sae=d_sae, arch="topk" if name == "TopK" else "relu", k=k or 32),
        SaeMetadata(layer=layer, token_set="all"),
    )
    with torch.no_grad():
        sae.W_enc_T.copy_(w_enc.T)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_dec.copy_(b_dec)
    early = is_early(header)
    if not early:
        sae.fold_unsubtracted_b_dec()
    notes = (f"saev {NEGATIVE_TOPK_NOTE}.",) if name == "TopK" else ()
    return Published(LAYOUT if not early else f"{LAYOUT} (early format)", sae, notes, needs_statistics=early)
