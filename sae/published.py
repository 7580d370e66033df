"""SAEs the field published as torch pickles, read once and safely, then kept as project SAEs.

A pickle can run code when it is loaded. sae-studio reads one only through torch's weights-only
loader (``torch.load(weights_only=True)``), and only on torch 2.10 or newer: older versions had
remote-code-execution bugs in that loader (CVE-2025-32434, CVE-2026-24747). It never runs a
repository's own ``model.py`` or loader, and ``sae-studio import`` converts the file once into
safetensors (SAELens' layout), so nothing reads the pickle again.

Layouts read here:

- Daujotas' Kandinsky 2.2 embedding SAE (hub ``gytdau/clip-sae-128``, ``sparse_autoencoder_128.pth``):
  a state dict of ``encoder.weight [F, D]``, ``enc_bias [F]``, ``decoder.weight [D, F]``,
  ``dec_bias [D]`` with ``f = relu(encoder(x) + enc_bias)``, ``x_hat = decoder(f) + dec_bias``; the
  decoder bias is not subtracted before encoding, so it is folded into ``b_enc``. It reads
  ViT-bigG-14's 1280-d image embedding, which Kandinsky 2.2 paints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sae.errors import UserError
from sae.hooks import EMBEDDING
from sae.model import SaeConfig, SaeMetadata, SparseAutoencoder

SAFE_TORCH = (2, 10)  # the first torch whose weights-only loader has both CVE fixes
PICKLE_SUFFIXES = (".pth", ".pt")
DAUJOTAS_KEYS = ("encoder.weight", "enc_bias", "decoder.weight", "dec_bias")
DAUJOTAS_ENCODER = "ViT-bigG-14:laion2b_s39b_b160k"  # Kandinsky 2.2's image encoder, 1280-d


def torch_version(version: str | None = None) -> tuple[int, int]:
    """(major, minor) of ``version``, by default the torch that runs."""
    major, minor = (version or torch.__version__).split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickled state dict, through torch's weights-only loader; one sentence for
    anything else (code, other objects, a damaged file) and nothing in the file runs."""
    path = Path(path)
    if torch_version() < SAFE_TORCH:
        raise UserError(
            f"Reading {path.name} needs torch {SAFE_TORCH[0]}.{SAFE_TORCH[1]} or newer (this is {torch.__version__}): "
            "older torch can be made to run code by a crafted file (CVE-2025-32434, CVE-2026-24747)."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for forbidden globals, RuntimeError for damaged storages
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(
            f"{path} is not a plain file of tensors that can be read safely ({first}); nothing in it was run."
        ) from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict of named tensors.")
    return obj


def find_pickle(source: str | Path) -> Path | None:
    """The one pickle file ``source`` is or holds (None when it holds none)."""
    source = Path(source)
    if source.is_file():
        return source if source.suffix in PICKLE_SUFFIXES else None
    found = sorted(p for p in source.glob("*") if p.suffix in PICKLE_SUFFIXES) if source.is_dir() else []
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:3])
        raise UserError(f"{source} holds several pickles ({names}); name the one to import.")
    return found[0] if found else None


def load_published(source: str | Path, layer: int | None = None) -> tuple[str, SparseAutoencoder]:
    """(layout name, project SAE) for a published pickle, or one sentence naming what it is not."""
    path = find_pickle(source)
    if path is None:
        raise UserError(f"{source} holds no .pth or .pt file of a published SAE.")
    t = read_tensors(path)
    if all(k in t for k in DAUJOTAS_KEYS):
        return "Kandinsky 2.2 embedding SAE (gytdau/clip-sae-128)", _daujotas(path, t, layer)
    raise UserError(
        f"{path} is not a published SAE layout sae-studio knows (its tensors: {', '.join(list(t)[:6])}); "
        "it reads the Kandinsky 2.2 embedding SAE's (encoder.weight, enc_bias, decoder.weight, dec_bias)."
    )


def _daujotas(path: Path, t: dict[str, torch.Tensor], layer: int | None) -> SparseAutoencoder:
    enc, b_enc, dec, b_dec = (t[k].float() for k in DAUJOTAS_KEYS)
    if enc.dim() != 2 or dec.shape != enc.T.shape or b_enc.shape != enc.shape[:1] or b_dec.shape != enc.shape[1:]:
        raise UserError(f"{path}: the shapes of its tensors do not fit together; the file is damaged.")
    d_sae, d_in = enc.shape
    backbone = DAUJOTAS_ENCODER if d_in == 1280 else ""
    sae = SparseAutoencoder(
        SaeConfig(d_in=d_in, d_sae=d_sae, arch="relu"),
        SaeMetadata(backbone=backbone, layer=EMBEDDING if layer is None else layer, token_set="all"),
    )
    with torch.no_grad():
        sae.W_enc_T.copy_(enc)
        sae.b_enc.copy_(b_enc + enc @ b_dec)  # relu(W x + b) = relu(W (x - b_dec) + b + W b_dec)
        sae.W_dec.copy_(dec.T)
        sae.b_dec.copy_(b_dec)
    return sae
