"""The sparse autoencoder: TopK (default), ReLU or JumpReLU, its encode/decode, and its folder on disk.

Shapes: x [B, d_in]; pre-activations and codes [B, d_sae]; a TopK code is also kept sparse as
``SparseCode(values [B, k], indices [B, k])``.

Math (``s`` is the input scale that brings activations to mean norm sqrt(d_in)):
    f     = topk(W_enc^T (s x - b_dec) + b_enc)            TopK, then ReLU on the k kept
    f     = relu(W_enc^T (s x - b_dec) + b_enc)            ReLU
    f     = relu(pre) * (pre > threshold)                  JumpReLU (read and edited, not trained here)
    x_hat = (W_dec^T f + b_dec) / s

On disk the folder is SAELens' layout (``cfg.json`` + ``sae_weights.safetensors`` with
``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``, a JumpReLU's ``threshold``)
with ``s`` folded into the weights, so SAELens or any other consumer gets the same features with
no extra step. The project's own facts (backbone, layer, token set, training metrics) sit in
``cfg.json`` under ``metadata.sae_studio`` (``sae.sae_config`` reads it); feature labels live in
``labels.json``. Other formulas (SAELens' options, gated SAEs, published layouts) are written into
this one map by the ``fold_*`` methods.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from sae import atomic
from sae.errors import UserError
from sae.sae_config import (
    SAELENS_ARCH,
    SAELENS_FORMAT,
    SaeConfig,
    SaeMetadata,
    config_from_saelens,
    read_config,
)

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
LABELS_NAME = "labels.json"


class SparseCode(NamedTuple):
    values: torch.Tensor  # [B, k], >= 0
    indices: torch.Tensor  # [B, k], int64 latent ids


class ForwardOutput(NamedTuple):
    reconstruction: torch.Tensor  # [B, d_in], in the input's own scale
    code: torch.Tensor  # [B, d_sae], dense


def all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds no NaN or infinity, read in blocks so a wide SAE's weights are not copied
    as booleans at once."""
    return all(torch.isfinite(block).all() for block in t.reshape(-1).split(1 << 24))


def sae_folders_inside(folder: Path) -> str:
    """The SAE folders directly inside ``folder`` (a release or a run holds one per layer), named for a
    sentence: "a, b, c and 9 more", or "" when there are none."""
    found = sorted(p.name for p in folder.iterdir() if (p / CFG_NAME).is_file()) if folder.is_dir() else []
    shown = ", ".join(found[:3])
    return f"{shown} and {len(found) - 3} more" if len(found) > 3 else shown


class SparseAutoencoder(nn.Module):
    """A TopK, ReLU or JumpReLU SAE. ``W_enc_T`` is stored as [d_sae, d_in] (one row per latent) because
    the training kernels gather and scatter whole rows; ``W_enc`` is its [d_in, d_sae] view."""

    def __init__(self, cfg: SaeConfig, metadata: SaeMetadata | None = None):
        super().__init__()
        self.cfg = cfg
        self.metadata = metadata or SaeMetadata()
        self.W_enc_T = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        if cfg.arch == "jumprelu":  # each latent fires only above its own threshold
            self.register_buffer("threshold", torch.zeros(cfg.d_sae))
        # Multiply inputs by this before encoding (1.0 once folded, as every saved SAE is).
        self.register_buffer("input_scale", torch.tensor(1.0), persistent=False)

    # -- shapes -----------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def W_enc(self) -> torch.Tensor:
        """[d_in, d_sae], SAELens' orientation."""
        return self.W_enc_T.T

    # -- init --------------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, sample: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Unit-norm random decoder rows, encoder = decoder transpose (rescaled, see below),
        b_dec = the data mean.

        ``sample`` [N, d_in] is raw activations; it also sets the input scale so the scaled
        inputs have mean norm sqrt(d_in).
        """
        sample = sample.float()
        mean_norm = sample.norm(dim=-1).mean().clamp_min(1e-8)
        self.input_scale.fill_(math.sqrt(self.d_in) / mean_norm.item())
        w = torch.randn(self.d_sae, self.d_in, generator=generator)
        w /= w.norm(dim=-1, keepdim=True)
        self.W_dec.copy_(w)
        self.W_enc_T.copy_(w)
        self.b_enc.zero_()
        self.b_dec.copy_((sample * self.input_scale).mean(0))
        # Scale the encoder so the first reconstructions have the size of the data: with
        # b_enc = 0 the code is positively homogeneous in W_enc, so the least-squares factor
        # c = <xc, r> / <r, r> makes c * r the best fit of xc. Unit-norm encoder rows overshoot
        # by about 2x (k rows each at ~2.5 sigma), which costs FVU for the whole run.
        probe = sample[:8192] * self.input_scale - self.b_dec
        r = self.decode(self.encode(sample[:8192])) * self.input_scale - self.b_dec
        c = (probe * r).sum() / r.pow(2).sum().clamp_min(1e-12)
        if torch.isfinite(c) and c > 0:
            self.W_enc_T.mul_(c)

    # -- the maps ----------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> [..., d_sae]."""
        x = x.to(self.W_enc_T.dtype) * self.input_scale
        return F.linear(x - self.b_dec, self.W_enc_T, self.b_enc)

    def encode_sparse(self, x: torch.Tensor) -> SparseCode:
        """TopK code as (values, indices), without building the dense [.., d_sae] tensor."""
        pre = self.pre_activations(x)
        if self.cfg.arch != "topk":
            raise ValueError("encode_sparse is for TopK SAEs; use encode for a ReLU SAE.")
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return SparseCode(values.relu(), indices)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> dense code f [..., d_sae] (the SAELens feature activations)."""
        pre = self.pre_activations(x)
        if self.cfg.arch == "relu":
            return pre.relu()
        if self.cfg.arch == "jumprelu":
            return pre.relu() * (pre > self.threshold)
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, values.relu())

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Dense code f [..., d_sae] -> reconstruction [..., d_in] in the input's scale."""
        return (f @ self.W_dec + self.b_dec) / self.input_scale

    def decode_sparse(self, code: SparseCode) -> torch.Tensor:
        """SparseCode -> reconstruction [B, d_in], gathering only the k decoder rows used."""
        shape = code.indices.shape
        out = F.embedding_bag(
            code.indices.reshape(-1, shape[-1]),
            self.W_dec,
            per_sample_weights=code.values.reshape(-1, shape[-1]).to(self.W_dec.dtype),
            mode="sum",
        )
        return ((out + self.b_dec) / self.input_scale).reshape(*shape[:-1], self.d_in)

    def forward(self, x: torch.Tensor) -> ForwardOutput:
        f = self.encode(x)
        return ForwardOutput(self.decode(f), f)

    def weights(self) -> dict[str, torch.Tensor]:
        """Its tensors by their names on disk (``W_enc`` as the [d_sae, d_in] rows it keeps)."""
        out = {"W_enc": self.W_enc_T, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.cfg.arch == "jumprelu":
            out["threshold"] = self.threshold
        return out

    @torch.no_grad()
    def check_finite(self, source: str | Path) -> None:
        """One sentence when a weight holds NaN or an infinity (a damaged file, or a training run
        that diverged): such an SAE would turn every edit into NaN, which the decoder paints as nothing."""
        for name, t in self.weights().items():
            if not all_finite(t):
                raise UserError(
                    f"{source}: its {name} holds NaN or infinite values, so the SAE is damaged (or was saved "
                    "after its training diverged) and cannot be used."
                )

    # -- normalisation -------------------------------------------------------------------------
    @torch.no_grad()
    def fold_input_scale(self) -> None:
        """Fold ``input_scale`` into the weights so the SAE takes raw inputs (scale becomes 1).

        (s x - b_dec) W_enc = (x - b_dec/s)(s W_enc), and (f W_dec + b_dec)/s = f (W_dec/s) + b_dec/s.
        """
        s = float(self.input_scale)
        if s == 1.0:
            return
        self.W_enc_T.mul_(s)
        self.W_dec.div_(s)
        self.b_dec.div_(s)
        self.metadata.input_scale = s
        self.input_scale.fill_(1.0)

    # -- other projects' formulas, written into this one map ------------------------------------
    @torch.no_grad()
    def fold_unsubtracted_b_dec(self) -> None:
        """For a layout encoding ``act(x W_enc + b_enc)``: W (x - b_dec) + (b + W b_dec) = W x + b."""
        self.b_enc.add_(self.W_enc_T @ self.b_dec)

    @torch.no_grad()
    def fold_input_affine(self, mean: torch.Tensor, scale: float) -> None:
        """For an SAE that reads ``z = (x - mean) * scale``: afterwards it reads ``x`` itself.

        act(((x - m) s - b) W + c) = act((x - (m + b / s)) (s W) + c), and (f W_dec + b) / s + m
        = f (W_dec / s) + (m + b / s): so W_enc *= s, W_dec /= s, b_dec = m + b_dec / s.
        """
        self.W_enc_T.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.copy_(mean.to(self.b_dec) + self.b_dec / scale)

    @torch.no_grad()
    def fold_decoder_norms(self) -> None:
        """For SAELens' ``rescale_acts_by_decoder_norm``, which scales each pre-activation by its
        decoder row's norm ``n`` and decodes ``(f / n) W_dec``: W_enc, b_enc and a threshold *= n,
        W_dec /= n give the same codes and reconstructions."""
        norms = self.W_dec.norm(dim=-1)
        self.W_enc_T.mul_(norms[:, None])
        self.b_enc.mul_(norms)
        self.W_dec.div_(norms.clamp_min(1e-12)[:, None])
        if self.cfg.arch == "jumprelu":
            self.threshold.mul_(norms)

    # -- disk --------------------------------------------------------------------------------
    @property
    def hook_name(self) -> str:
        """Where it reads, in SAELens / TransformerLens' hook names."""
        if self.metadata.layer == -2:
            return "embedding"
        if self.metadata.site in ("mlp_out", "attn_out"):
            return f"blocks.{self.metadata.layer}.hook_{self.metadata.site}"
        return f"blocks.{self.metadata.layer}.hook_resid_pre"

    def saelens_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "architecture": SAELENS_ARCH[self.cfg.arch],
            "metadata": {
                "sae_lens_version": SAELENS_FORMAT,
                "sae_lens_training_version": None,
                "model_name": self.metadata.backbone,
                "hook_name": self.hook_name,
                "sae_studio": asdict(self.metadata),
            },
        }
        if self.cfg.arch == "topk":
            cfg["k"] = self.cfg.k
            cfg["rescale_acts_by_decoder_norm"] = False
        return cfg

    def folded_copy(self) -> SparseAutoencoder:
        """A copy that takes raw inputs (input scale folded into the weights), for writing to disk."""
        copy = SparseAutoencoder(self.cfg, SaeMetadata(**asdict(self.metadata)))
        copy.load_state_dict(self.state_dict())
        copy.input_scale.fill_(float(self.input_scale))
        copy.fold_input_scale()
        return copy

    @torch.no_grad()
    def keep_latents(self, keep: torch.Tensor) -> SparseAutoencoder:
        """A copy holding only the latents ``keep`` (indices, in order), renumbered 0..len-1."""
        keep = torch.as_tensor(keep, dtype=torch.long)
        cfg = SaeConfig(d_in=self.d_in, d_sae=len(keep), arch=self.cfg.arch, k=self.cfg.k)
        out = SparseAutoencoder(cfg, SaeMetadata(**asdict(self.metadata))).to(self.W_dec.device)
        theirs = out.weights()
        for name, mine in self.weights().items():  # every tensor but b_dec holds a row per latent
            theirs[name].copy_(mine if name == "b_dec" else mine[keep])
        out.input_scale.fill_(float(self.input_scale))
        return out

    def save(self, folder: str | Path, extra: Callable[[Path], None] | None = None) -> Path:
        """Write the SAE folder atomically (a crash leaves the previous version whole).

        ``extra(tmp_folder)`` may write more files into the same atomic swap (the trainer's
        resumable state lives beside the weights this way).
        """
        folder = Path(folder)
        copy = self.folded_copy()
        tensors = {  # W_enc in SAELens' orientation, [d_in, d_sae]
            name: (t.T if name == "W_enc" else t).detach().float().contiguous().cpu()
            for name, t in copy.weights().items()
        }
        labels = folder / LABELS_NAME
        with atomic.atomic_dir(folder) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_NAME))
            (tmp / CFG_NAME).write_text(json.dumps(copy.saelens_config(), indent=2) + "\n")
            (tmp / LABELS_NAME).write_text(labels.read_text() if labels.is_file() else "{}\n")
            if (folder / "index").is_dir():  # the feature index stays with the SAE
                shutil.copytree(folder / "index", tmp / "index")
            if extra is not None:
                extra(tmp)
        return folder

    @classmethod
    def allocate(cls, cfg: SaeConfig, meta: SaeMetadata, folder: Path) -> SparseAutoencoder:
        """An SAE of ``cfg``'s size to read ``folder``'s weights into; one sentence when the machine
        cannot hold it."""
        try:
            return cls(cfg, meta)
        except (RuntimeError, MemoryError) as e:
            need = 4 * (2 * cfg.d_in * cfg.d_sae + cfg.d_sae + cfg.d_in) / 1e9
            raise UserError(
                f"{folder}'s {cfg.d_sae:,} latents need {need:.1f} GB, more memory than this machine could give."
            ) from e

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
        """Load an SAE folder in SAELens' layout. Never unpickles: JSON and safetensors only."""
        folder = Path(folder)
        atomic.recover_dir(folder)
        cfg_path, weights_path = folder / CFG_NAME, folder / WEIGHTS_NAME
        if not folder.is_dir():
            raise UserError(f"SAE folder {folder} does not exist; pass a folder with {CFG_NAME} and {WEIGHTS_NAME}.")
        if not cfg_path.is_file() or not weights_path.is_file():
            pickles = [p.name for p in folder.iterdir() if p.suffix in {".pt", ".pth", ".bin", ".pkl", ".ckpt"}]
            missing = CFG_NAME if not cfg_path.is_file() else WEIGHTS_NAME
            if pickles:  # a published SAE: converted once, safely, by the import command
                raise UserError(
                    f"SAE folder {folder} has no {missing} but a pickle ({pickles[0]}), which sae-studio never "
                    "unpickles when it opens an SAE; convert it once, safely, with "
                    f"sae-studio import {folder} -o NEW_FOLDER."
                )
            if missing == CFG_NAME and (inside := sae_folders_inside(folder)):
                raise UserError(f"{folder} holds SAE folders, not one SAE: {inside}; pass one of them.")
            if missing == CFG_NAME:
                raise UserError(f"SAE folder {folder} has no {CFG_NAME}; it is not an SAE folder in SAELens' layout.")
            raise UserError(f"SAE folder {folder} has no {WEIGHTS_NAME}; save the weights as safetensors.")
        raw = read_config(cfg_path, "; restore it or re-save the SAE")
        cfg = config_from_saelens(raw, cfg_path)
        extra = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        meta = SaeMetadata.from_dict(extra["sae_studio"] if isinstance(extra.get("sae_studio"), dict) else {}, cfg_path)
        if not meta.backbone:  # another tool's SAE may name its model; a name is a string
            named = extra.get("model_name") or raw.get("model_name")
            meta.backbone = named if isinstance(named, str) else ""
        if meta.layer < 0:  # another tool's SAE: its hook point says where it was trained
            from sae.hooks import layer_from_hook, sublayer_from_hook

            hook = extra.get("hook_name") or raw.get("hook_name") or ""
            hook = hook if isinstance(hook, str) else ""
            layer, sublayer = layer_from_hook(hook), sublayer_from_hook(hook)
            if sublayer is not None:
                meta.layer, meta.site = sublayer
            else:
                meta.layer = -1 if layer is None else layer
        expected = {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "b_enc": (cfg.d_sae,),
            "W_dec": (cfg.d_sae, cfg.d_in),
            "b_dec": (cfg.d_in,),
        }
        gated = raw.get("architecture") == "gated"
        if gated:
            del expected["b_enc"]
            expected |= {"b_gate": (cfg.d_sae,), "b_mag": (cfg.d_sae,), "r_mag": (cfg.d_sae,)}
        elif cfg.arch == "jumprelu":
            expected["threshold"] = (cfg.d_sae,)
        with open_weights(weights_path) as f:
            keys = set(f.keys())
            for name, shape in expected.items():  # before any memory is taken for the config's sizes
                if name not in keys:
                    raise UserError(f"{weights_path} has no tensor '{name}'; it is not a complete SAE.")
                if tuple(f.get_slice(name).get_shape()) != shape:
                    raise UserError(
                        f"{weights_path}: '{name}' has shape {tuple(f.get_slice(name).get_shape())} but cfg.json "
                        f"says {shape}; the weights and the config do not belong together."
                    )
                if not (dtype := f.get_slice(name).get_dtype()).startswith(("F", "BF")):
                    raise UserError(f"{weights_path}: '{name}' holds {dtype} values, not weights.")
        sae = cls.allocate(cfg, meta, folder)
        with open_weights(weights_path) as f, torch.no_grad():  # one tensor at a time: a wide SAE is not held twice
            if gated:
                _read_gated(sae, f)
            else:
                for name, param in sae.weights().items():
                    t = f.get_tensor(name)
                    param.copy_(t.T if name == "W_enc" else t)
                    del t
            scaling = _finetuning_scaling(f, raw, cfg, weights_path)
        sae.check_finite(folder)
        # SAELens' options that change the map, written into sae-studio's one formula
        if raw.get("apply_b_dec_to_input") is False:
            sae.fold_unsubtracted_b_dec()
        if raw.get("rescale_acts_by_decoder_norm") is True:
            sae.fold_decoder_norms()
        if scaling is not None:  # SAELens before 6 decoded (f * scaling_factor) W_dec
            with torch.no_grad():
                sae.W_dec.mul_(scaling[:, None])
        return sae.to(device)


@torch.no_grad()
def _read_gated(sae: SparseAutoencoder, f: Any) -> None:
    """A SAELens gated SAE as the JumpReLU SAE it equals. It fires where the gate ``s + b_gate`` is
    positive (``s = (x - b_dec) W_enc``) with the magnitude ``relu(e s + b_mag)``, ``e = exp(r_mag)``.
    As e > 0, the gate is open exactly where the magnitude's pre-activation exceeds ``b_mag - e b_gate``:
    so W_enc *= e, b_enc = b_mag and that is the threshold."""
    scale = f.get_tensor("r_mag").float().exp()
    sae.W_enc_T.copy_(f.get_tensor("W_enc").T)
    sae.W_enc_T.mul_(scale[:, None])
    sae.b_enc.copy_(f.get_tensor("b_mag"))
    sae.threshold.copy_(sae.b_enc - scale * f.get_tensor("b_gate").float())
    sae.W_dec.copy_(f.get_tensor("W_dec"))
    sae.b_dec.copy_(f.get_tensor("b_dec"))


def _finetuning_scaling(f: Any, raw: dict, cfg: SaeConfig, weights_path: Path) -> torch.Tensor | None:
    """The per-latent ``scaling_factor`` older SAELens files multiply codes by before decoding, when
    it is there and not all ones (as SAELens' loader reads it); one sentence when it cannot be used."""
    if "scaling_factor" not in f.keys():
        return None
    scaling = f.get_tensor("scaling_factor")
    if tuple(scaling.shape) != (cfg.d_sae,) or not scaling.is_floating_point() or not all_finite(scaling):
        raise UserError(f"{weights_path}: its scaling_factor is not {cfg.d_sae} finite numbers; the file is damaged.")
    if torch.allclose(scaling.float(), torch.ones(cfg.d_sae)):
        return None
    if not raw.get("finetuning_scaling_factor"):
        raise UserError(
            f"{weights_path} holds a scaling_factor but its cfg.json sets no finetuning_scaling_factor; the two "
            "do not belong together."
        )
    return scaling.float()


@contextlib.contextmanager
def open_weights(weights_path: Path):
    """``weights_path`` opened with safetensors; a corrupt file becomes one sentence."""
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            yield f
    except UserError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise UserError(f"{weights_path} is not a readable safetensors file ({e}); re-save the SAE.") from e


def check_fits_layer(sae: SparseAutoencoder, d_model: int, where: str) -> None:
    """One clear sentence when an SAE's width does not match the residual it is meant for."""
    if sae.d_in != d_model:
        raise UserError(
            f"The SAE has d_in={sae.d_in} but {where} has width {d_model}; load an SAE trained on this model and layer."
        )
