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
- Prisma's vision SAEs (hub org ``Prisma-Multimodal``): ``config.json`` (``model_name``
  ``open-clip:<hub repo>``, ``hook_point_layer``, ``layer_subtype``, ``activation_fn_str`` relu or
  topk with ``activation_fn_kwargs.k``, ``cls_token_only``/``use_patches_only``) beside a pickled
  state dict ``W_enc [D, F]``, ``b_enc``, ``W_dec [F, D]``, ``b_dec`` (``weights.pt`` or
  ``n_images_*.pt``); ``f = act((x - b_dec) W_enc + b_enc)``, sae-studio's own map. Hook
  ``blocks.N.hook_resid_pre`` is layer N, ``blocks.N.hook_resid_post`` layer N + 1.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sae.errors import UserError
from sae.hooks import EMBEDDING
from sae.model import SaeConfig, SaeMetadata, SparseAutoencoder, read_config

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
    config = path.parent / "config.json"
    if config.is_file():
        return "Prisma", _prisma(path, config, layer)
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


PRISMA_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")


def open_clip_spec(hub_repo: str) -> str:
    """The open_clip NAME:TAG whose weights live in ``hub_repo`` ("" when open_clip knows none)."""
    import open_clip

    for name, tag in open_clip.list_pretrained():
        if ((open_clip.get_pretrained_cfg(name, tag) or {}).get("hf_hub") or "").strip("/") == hub_repo.strip("/"):
            return f"{name}:{tag}"
    return ""


def _prisma(path: Path, config: Path, layer: int | None) -> SparseAutoencoder:
    cfg = read_config(config)
    subtype = str(cfg.get("layer_subtype", ""))
    if cfg.get("is_transcoder") or cfg.get("architecture", "standard") != "standard":
        kind = "transcoder" if cfg.get("is_transcoder") else f"'{cfg.get('architecture')}' SAE"
        raise UserError(f"{path.parent} is a Prisma {kind}; sae-studio edits standard ReLU and TopK SAEs.")
    if cfg.get("normalize_activations") not in (None, "none"):
        raise UserError(
            f"{path.parent} normalises its inputs ({cfg['normalize_activations']}) at run time, which its files do not "
            "hold; sae-studio cannot reproduce its activations."
        )
    if layer is None:
        if subtype not in ("hook_resid_pre", "hook_resid_post"):
            raise UserError(
                f"{path.parent} reads blocks.{cfg.get('hook_point_layer')}.{subtype}, not the residual stream; "
                "sae-studio edits residual-stream SAEs (hook_resid_pre or hook_resid_post) so far."
            )
        layer = int(cfg.get("hook_point_layer", -1)) + (subtype == "hook_resid_post")
    act = cfg.get("activation_fn_str", "relu")
    if act not in ("relu", "topk"):
        raise UserError(f"{path.parent} uses the activation '{act}'; sae-studio edits ReLU and TopK SAEs.")
    t = read_tensors(path)
    missing = [k for k in PRISMA_KEYS if k not in t]
    if missing:
        raise UserError(f"{path} has no '{missing[0]}'; it is not a complete Prisma SAE.")
    w_enc, b_enc, w_dec, b_dec = (t[k].float() for k in PRISMA_KEYS)
    d_in, d_sae = w_enc.shape
    if w_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise UserError(f"{path}: the shapes of its tensors do not fit together; the file is damaged.")
    model = str(cfg.get("model_name", ""))
    k = int((cfg.get("activation_fn_kwargs") or {}).get("k", 0) or 0)
    if act == "topk" and not 0 < k <= d_sae:
        raise UserError(f"{config} says topk but gives no k between 1 and {d_sae} in activation_fn_kwargs.")
    tokens = "cls" if cfg.get("cls_token_only") else "patches" if cfg.get("use_patches_only") else "all"
    sae = SparseAutoencoder(
        SaeConfig(d_in=d_in, d_sae=d_sae, arch=act, k=k if act == "topk" else 32),
        SaeMetadata(
            backbone=open_clip_spec(model.removeprefix("open-clip:")) if model.startswith("open-clip:") else "",
            layer=layer,
            token_set=tokens,
        ),
    )
    with torch.no_grad():
        sae.W_enc_T.copy_(w_enc.T)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_dec.copy_(b_dec)
    return sae
