"""Prisma's vision SAEs (hub org ``Prisma-Multimodal``, code ``Prisma-Multimodal/ViT-Prisma``).

``config.json`` (``model_name`` ``open-clip:<hub repo>``, ``hook_point_layer``, ``layer_subtype``,
``activation_fn_str`` relu or topk with ``activation_fn_kwargs.k``, ``cls_token_only`` /
``use_patches_only``) beside a pickled state dict ``W_enc [D, F]``, ``b_enc``, ``W_dec [F, D]``,
``b_dec`` (``weights.pt`` or ``n_images_*.pt``); ``f = act((x - b_dec) W_enc + b_enc)``, sae-studio's
own map. Hook ``blocks.N.hook_resid_pre`` is layer N, ``blocks.N.hook_resid_post`` layer N + 1;
``blocks.N.hook_mlp_out`` and ``hook_attn_out`` are block N's MLP and attention outputs, which
sae-studio reads and edits where they join the residual stream (``sae.backbone``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sae.errors import UserError
from sae.hooks import RESID, layer_from_hook, sublayer_from_hook
from sae.model import SparseAutoencoder
from sae.published.pickles import as_weights, read_tensors
from sae.sae_config import SaeConfig, SaeMetadata, read_config, whole_number

LAYOUT = "Prisma"

KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")


def open_clip_spec(hub_repo: str) -> str:
    """The open_clip NAME:TAG whose weights live in ``hub_repo`` ("" when open_clip knows none)."""
    import open_clip

    for name, tag in open_clip.list_pretrained():
        if ((open_clip.get_pretrained_cfg(name, tag) or {}).get("hf_hub") or "").strip("/") == hub_repo.strip("/"):
            return f"{name}:{tag}"
    return ""


def read_prisma(path: Path, config: Path, layer: int | None) -> SparseAutoencoder:
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
    hook = f"blocks.{cfg.get('hook_point_layer')}.{subtype}"
    sublayer = sublayer_from_hook(hook)
    site = sublayer[1] if sublayer else RESID
    if sublayer is None and layer_from_hook(hook) is None:
        raise UserError(
            f"{path.parent} reads {hook}, which is not a residual stream, MLP output or attention output; "
            "sae-studio edits SAEs on those, where an edit can be added back exactly."
        )
    if layer is None:
        layer = sublayer[0] if sublayer else layer_from_hook(hook)
    act = cfg.get("activation_fn_str", "relu")
    if act not in ("relu", "topk"):
        raise UserError(f"{path.parent} uses the activation '{act}'; sae-studio edits ReLU and TopK SAEs.")
    t = read_tensors(path)
    missing = [k for k in KEYS if k not in t]
    if missing:
        raise UserError(f"{path} has no '{missing[0]}'; it is not a complete Prisma SAE.")
    w_enc, b_enc, w_dec, b_dec = (as_weights(t[k], k, path) for k in KEYS)
    d_in, d_sae = w_enc.shape if w_enc.dim() == 2 else (0, 0)
    if w_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise UserError(f"{path}: the shapes of its tensors do not fit together; the file is damaged.")
    model = str(cfg.get("model_name", ""))
    kwargs = cfg.get("activation_fn_kwargs") if isinstance(cfg.get("activation_fn_kwargs"), dict) else {}
    k = whole_number(kwargs.get("k")) or 0
    if act == "topk" and not 0 < k <= d_sae:
        raise UserError(f"{config} says topk but gives no k between 1 and {d_sae} in activation_fn_kwargs.")
    tokens = "cls" if cfg.get("cls_token_only") else "patches" if cfg.get("use_patches_only") else "all"
    sae = SparseAutoencoder(
        SaeConfig(d_in=d_in, d_sae=d_sae, arch=act, k=k if act == "topk" else 32),
        SaeMetadata(
            backbone=open_clip_spec(model.removeprefix("open-clip:")) if model.startswith("open-clip:") else "",
            layer=layer,
            token_set=tokens,
            site=site,
        ),
    )
    with torch.no_grad():
        sae.W_enc_T.copy_(w_enc.T)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_dec.copy_(b_dec)
    return sae
