"""An SAE's configuration (``SaeConfig``: its sizes and activation; ``SaeMetadata``: what it reads
and how it was made) and how a SAELens ``cfg.json``, of any SAELens version, reads into it.

The weights and the maps live in ``sae.model``; this module holds no tensors, so a config can be
checked before any memory is taken for the sizes it claims.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sae import atomic
from sae.errors import UserError
from sae.hooks import SITES

ARCHS = ("topk", "relu", "jumprelu")
TRAINABLE = ("topk", "relu")  # a JumpReLU SAE (SAELens' own, or its BatchTopK saved for use) is read, not trained
# SAELens names the ReLU SAE "standard".
SAELENS_ARCH = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu"}
# A gated SAE is a JumpReLU one once its weights are rewritten (``sae.model``).
FROM_SAELENS_ARCH = {v: k for k, v in SAELENS_ARCH.items()} | {"gated": "jumprelu"}
# The cfg.json format version we write; SAELens reads >= 6.0 configs without conversion.
SAELENS_FORMAT = "6.0.0"


@dataclass
class SaeConfig:
    d_in: int
    d_sae: int
    arch: str = "topk"
    k: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"SAE architecture '{self.arch}' is unknown; use one of {', '.join(ARCHS)}.")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise UserError(f"SAE sizes must be positive (got d_in={self.d_in}, d_sae={self.d_sae}).")
        if self.arch == "topk" and not 0 < self.k <= self.d_sae:
            raise UserError(f"TopK k must be between 1 and the width {self.d_sae} (got {self.k}).")


@dataclass
class SaeMetadata:
    """What the SAE was trained on and how well it does; saved in cfg.json under sae_studio."""

    backbone: str = ""  # open_clip model id, e.g. "ViT-bigG-14:laion2b_s39b_b160k"
    backbone_fingerprint: str = ""  # sae.backbone.weights_fingerprint of its weights
    # residual entering block `layer` (hook blocks.{layer}.hook_resid_pre); -2: the image embedding; -1: unknown
    layer: int = -1
    token_set: str = "all"  # all | patches | cls
    site: str = "resid"  # resid, or block `layer`'s attn_out / mlp_out (sae.hooks.SITES)
    input_scale: float = 1.0  # the normalisation scale, already folded into the saved weights
    metrics: dict[str, float] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    # for an SAE converted from another project's file: its layout, file and what the conversion assumed
    imported: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | Path = "cfg.json") -> SaeMetadata:
        """The metadata ``d`` holds. A field that decides where the SAE reads (encoder, layer, site,
        tokens) and holds something else gets one sentence; a record (metrics, training options) of
        the wrong kind is left out."""
        out = cls()
        for name, default in asdict(out).items():
            if name not in d:
                continue
            value = d[name]
            if name in _PLACE_CHECKS:
                fits, wanted = _PLACE_CHECKS[name]
                if not fits(value):
                    raise UserError(f"{source}: metadata.sae_studio gives {name} as {value!r}, not {wanted}.")
            else:
                kinds = (int, float) if isinstance(default, float) else type(default)
                if isinstance(value, bool) or not isinstance(value, kinds):
                    continue  # a record of the wrong kind: the default says "unknown"
            setattr(out, name, value)
        return out


# The metadata fields that decide where an SAE reads, and what each may hold.
_PLACE_CHECKS = {
    "backbone": (lambda v: isinstance(v, str), "an encoder name"),
    "layer": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -2,
        "a layer (a whole number, -2 for the image embedding)",
    ),
    "token_set": (lambda v: v in ("all", "patches", "cls"), "all, patches or cls"),  # sae.backbone.TOKEN_SETS
    "site": (lambda v: v in SITES, "resid, attn_out or mlp_out"),
}


def read_config(path: Path, fix: str = "") -> dict[str, Any]:
    """A JSON config whose top level is an object; one sentence (ending in ``fix``) otherwise."""
    try:
        raw = atomic.parse_json(Path(path).read_text())
        if not isinstance(raw, dict):
            raise ValueError("top level is not an object")
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a valid JSON config ({e}){fix}.") from e
    return raw


def config_from_saelens(raw: dict, cfg_path: Path) -> SaeConfig:
    """The SaeConfig a SAELens cfg.json describes, read as SAELens reads it: older files give a TopK
    SAE as ``activation_fn_str: topk`` with ``activation_fn_kwargs.k``, and normalisation as a bool."""
    activation = raw.get("activation_fn_str", raw.get("activation_fn"))
    kwargs = raw.get("activation_fn_kwargs") if isinstance(raw.get("activation_fn_kwargs"), dict) else {}
    architecture = raw.get("architecture", "standard")
    if activation == "topk" and kwargs.get("k") is not None:
        architecture = "topk"
    arch = FROM_SAELENS_ARCH.get(architecture) if isinstance(architecture, str) else None
    if arch is None:
        raise UserError(
            f"{cfg_path} has architecture '{architecture}', which sae-studio cannot edit yet; it reads topk, "
            "jumprelu, gated and standard (ReLU) SAEs."
        )
    if arch == "relu" and activation not in (None, "relu"):
        raise UserError(
            f"{cfg_path} has activation '{activation}', which sae-studio cannot edit yet; it reads topk, "
            "jumprelu, gated and standard (ReLU) SAEs."
        )
    if raw.get("reshape_activations", "none") not in ("none", None):
        raise UserError(
            f"{cfg_path} reshapes its inputs ({raw['reshape_activations']}), as an SAE on attention heads does; "
            "sae-studio edits SAEs on whole residual, MLP or attention outputs."
        )
    normalise = raw.get("normalize_activations", "none")
    if normalise not in ("none", None, False):
        raise UserError(
            f"{cfg_path} asks for input normalisation '{normalise}', which sae-studio does not apply; fold the "
            "scale into the weights and set it to 'none'."
        )
    k = kwargs.get("k", raw.get("k", 32)) if arch == "topk" else raw.get("k", 32)
    return SaeConfig(
        d_in=config_size(raw.get("d_in"), "d_in", cfg_path),
        d_sae=config_size(raw.get("d_sae"), "d_sae", cfg_path),
        arch=arch,
        k=config_size(k, "k", cfg_path),
    )


def config_size(value: Any, name: str, cfg_path: Path) -> int:
    """A size a config file gives, as an int; one sentence when it is not a positive whole number
    (JSON also allows strings, bools, NaN and Infinity there)."""
    size = whole_number(value)
    if size is None:
        raise UserError(
            f"{cfg_path} gives {name} as {value!r}, not a positive whole number; it is not a usable SAE config."
        )
    return size


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a positive whole number (``5`` or ``5.0``), else None."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
        or value < 1
    ):
        return None
    return int(value)
