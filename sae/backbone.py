"""An open_clip vision transformer split at layer L.

``prefix(pixels)`` runs the patch embedding and blocks ``0..L-1`` and returns the residual
stream ``[B, 1+P, d]`` (class token first); ``suffix(residual)`` runs blocks ``L..N-1``, the
final norm, the pooling and the projection exactly as open_clip's ``VisionTransformer.forward``
does, so ``suffix(prefix(x)) == model.encode_image(x)``.

An SAE trained on block L's attention or MLP output (``site``) reads that output, and its edits
are added where the output joins the residual stream: ``split(pixels)`` returns that residual and
the SAE's input, and ``suffix`` continues from the residual, so the edit is exact.

Models load through open_clip itself, by built-in name and pretrained tag
(``ViT-bigG-14:laion2b_s39b_b160k``) or from a folder in open_clip's ``local-dir:`` layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``, as ``save_for_hf`` writes it).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.push_to_hf_hub import save_for_hf
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

from sae import atomic
from sae.errors import UserError
from sae.hooks import ATTN_OUT, EMBEDDING, MLP_OUT, RESID, SITE_WORDS, SITES
from sae.view import EncoderView
from sae.weights import load_into, without_init

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


@dataclass(frozen=True)
class BackboneSpec:
    """Where a model comes from: an open_clip name with a pretrained tag, or a local folder."""

    name: str
    pretrained: str | None = None
    local_dir: Path | None = None

    @classmethod
    def parse(cls, text: str) -> BackboneSpec:
        """``NAME:TAG``, ``NAME`` (random init), ``local-dir:PATH`` or a path to such a folder."""
        text = str(text)
        if text.startswith("local-dir:"):
            return cls(name=text, local_dir=Path(text[len("local-dir:") :]).expanduser())
        path = Path(text).expanduser()
        if path.is_dir() or "/" in text or text.startswith("."):
            return cls(name=f"local-dir:{path}", local_dir=path)
        name, _, tag = text.partition(":")
        return cls(name=name, pretrained=tag or None)

    @property
    def model_id(self) -> str:
        if self.local_dir is not None:
            return f"local-dir:{self.local_dir.resolve()}"
        return f"{self.name}:{self.pretrained}" if self.pretrained else self.name


@contextmanager
def _no_random_init_warning():
    """open_clip warns that a model it did not load weights into is initialised randomly."""

    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _plain_checkpoint(spec: BackboneSpec) -> Path | None:
    """The safetensors file open_clip would load for ``spec``, which ``sae.weights`` reads without
    mapping it (a GUI thread does not stall while a large encoder loads); None for other files,
    which open_clip loads itself."""
    found = None
    if spec.local_dir is not None:
        find = getattr(open_clip.factory, "_find_checkpoint_in_dir", None)
        found = find(spec.local_dir) if find is not None else None
    elif spec.pretrained:
        cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
        found = open_clip.pretrained.download_pretrained(cfg) if cfg else None
    return Path(found) if found and str(found).endswith(".safetensors") else None


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short hash that tells one set of weights from another without reading all of them.

    Hashes every tensor's name, shape and dtype and up to 4,096 evenly strided values, so
    it costs milliseconds even for ViT-bigG-14 yet changes with any retraining.
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step][:4096].to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def beside(spec: str, folder: str | Path) -> str:
    """``spec`` with a relative ``local-dir:`` path read from ``folder``, not the working directory.

    An SAE kept beside its encoder records it so (the demo SAE's encoder is ``local-dir:../clip``),
    and the pair then works wherever the two folders are copied together.
    """
    if spec.startswith("local-dir:") and not Path(spec[len("local-dir:") :]).expanduser().is_absolute():
        return f"local-dir:{Path(folder) / spec[len('local-dir:') :]}"
    return spec


def parse_layer(text: str | int | None) -> int | None:
    """A layer as users write it: a block number, or 'embedding' for the projected embedding."""
    if text is None or isinstance(text, int):
        return text
    if text.strip().lower() in ("embedding", "embeds", "image_embeds"):
        return EMBEDDING
    try:
        return int(text)
    except ValueError as e:
        raise UserError(f"Layer '{text}' is neither a block number nor 'embedding'.") from e


@dataclass
class Backbone:
    """An open_clip CLIP model whose image tower is split at ``layer``.

    ``layer`` may also be ``EMBEDDING``: then the "residual" is the projected image embedding as a
    single token [B, 1, embed_dim], the prefix is the whole encoder and the suffix the identity,
    so embedding-level SAEs run through every code path that layer-L SAEs do.
    """

    model: Any  # open_clip.CLIP or CustomTextCLIP
    model_id: str
    layer: int
    preprocess: Any = None  # open_clip's eval transform: PIL image -> [3, H, W]
    tokenizer: Any = None
    _fingerprint: str | None = field(default=None, repr=False)
    site: str = RESID  # RESID: the residual entering block `layer`; MLP_OUT / ATTN_OUT: that output of block `layer`

    def __post_init__(self) -> None:
        visual = self.model.visual
        if not isinstance(visual, VisionTransformer):
            raise UserError(
                f"Model {self.model_id} has a {type(visual).__name__} image tower; sae-studio splits "
                "only open_clip VisionTransformer towers (ViT-*), so pick a ViT model."
            )
        if self.site not in SITES:
            raise UserError(f"'{self.site}' is not a place sae-studio reads; use one of {', '.join(SITES)}.")
        last = self.n_layers if self.site == RESID else self.n_layers - 1
        if self.layer != EMBEDDING and not 0 <= self.layer <= last:
            raise UserError(
                f"Layer {self.layer} does not exist in {self.model_id}, which has "
                f"{self.n_layers} blocks; choose a layer from 0 to {last}."
            )
        if self.site != RESID and self.layer == EMBEDDING:
            raise UserError("The image embedding has no attention or MLP output; an embedding SAE reads it whole.")
        if self.site != RESID and type(self.visual.transformer.resblocks[self.layer]) is not ResidualAttentionBlock:
            raise UserError(
                f"{self.model_id}'s blocks are not open_clip's ResidualAttentionBlock, so sae-studio cannot reach "
                "their attention or MLP output; use an SAE on the residual stream."
            )

    # -- shape facts -------------------------------------------------------------------------
    @property
    def visual(self) -> VisionTransformer:
        return self.model.visual

    @property
    def n_layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def is_embedding(self) -> bool:
        return self.layer == EMBEDDING

    @property
    def where(self) -> str:
        """The split point in words, for messages."""
        if self.is_embedding:
            return "the image embedding"
        return f"layer {self.layer}" if self.site == RESID else f"the {SITE_WORDS[self.site]} of block {self.layer}"

    @property
    def width(self) -> int:
        """d, the residual width at every layer (the embedding's width at ``EMBEDDING``)."""
        return self.embed_dim if self.is_embedding else self.visual.transformer.width

    @property
    def n_tokens(self) -> int:
        """1 + P: the class token and the patches (1 at ``EMBEDDING``)."""
        return 1 if self.is_embedding else self.visual.positional_embedding.shape[0]

    @property
    def n_patches(self) -> int:
        """P, the patches a mask or heatmap can address (0 at ``EMBEDDING``)."""
        return 0 if self.is_embedding else self.n_tokens - 1

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, tuple | list) else int(size)

    @property
    def resize_mode(self) -> str:
        """How open_clip's preprocessing fits a picture to the model: shortest (centre crop),
        longest (pad) or squash."""
        try:
            return str(open_clip.get_model_preprocess_cfg(self.model).get("resize_mode") or "shortest")
        except Exception:  # a model without preprocessing facts gets open_clip's default
            return "shortest"

    def view(self, width: int, height: int) -> EncoderView:
        """Which part of a ``width`` x ``height`` picture this encoder reads, with its patch grid."""
        grid = int(round(self.n_patches**0.5)) if self.n_patches else 0
        return EncoderView.of(self.resize_mode, width, height, grid)

    @property
    def embed_dim(self) -> int:
        proj = self.visual.proj
        return proj.shape[1] if proj is not None else self.visual.transformer.width

    @property
    def device(self) -> torch.device:
        return self.visual.positional_embedding.device

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    def at_layer(self, layer: int, site: str = RESID) -> Backbone:
        """The same model split at another layer or sublayer (weights are shared, not copied)."""
        return Backbone(self.model, self.model_id, layer, self.preprocess, self.tokenizer, self._fingerprint, site)

    def for_sae(self, metadata) -> Backbone:
        """This model split where an SAE with ``metadata`` (sae.sae_config.SaeMetadata) reads (itself if it does)."""
        if metadata.layer in (-1, self.layer) and metadata.site == self.site:
            return self
        return self.at_layer(self.layer if metadata.layer == -1 else metadata.layer, metadata.site)

    # -- the split -----------------------------------------------------------------------------
    def _blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        transformer = self.visual.transformer
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        for block in transformer.resblocks[start:stop]:
            x = block(x, attn_mask=None)
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        return x

    def _sublayer(self, site: str, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, d] -> what block ``layer``'s attention (ATTN_OUT) or MLP (MLP_OUT) adds to it, as
        open_clip's ResidualAttentionBlock.forward computes it."""
        block = self.visual.transformer.resblocks[self.layer]
        t = x if self.visual.transformer.batch_first else x.transpose(0, 1)
        if site == ATTN_OUT:
            out = block.ls_1(block.attention(q_x=block.ln_1(t)))
        else:
            out = block.ls_2(block.mlp(block.ln_2(t)))
        return out if self.visual.transformer.batch_first else out.transpose(0, 1)

    def split(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [B, 3, H, W] (preprocessed) -> (residual [B, 1+P, d] where edits are added, the SAE's
        input [B, 1+P, d]). On the residual stream both are the residual entering block ``layer``;
        for a sublayer SAE, the residual just after that sublayer's output joined it, and the output."""
        if self.is_embedding:
            e = self.model.encode_image(pixels)[:, None, :]
            return e, e
        x = self._blocks(self.visual._embeds(pixels), 0, self.layer)
        if self.site == RESID:
            return x, x
        attn = self._sublayer(ATTN_OUT, x)
        if self.site == ATTN_OUT:
            return x + attn, attn
        mid = x + attn
        mlp = self._sublayer(MLP_OUT, mid)
        return mid + mlp, mlp

    def prefix(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] (preprocessed) -> the residual [B, 1+P, d] where edits are added."""
        return self.split(pixels)[0]

    def suffix(self, residual: torch.Tensor) -> torch.Tensor:
        """the residual ``prefix`` returns [B, 1+P, d] -> image embedding [B, embed_dim]."""
        if self.is_embedding:
            return residual[:, 0]
        x, start = residual, self.layer
        if self.site == ATTN_OUT:  # the rest of the block: its MLP
            x = x + self._sublayer(MLP_OUT, x)
        if self.site != RESID:
            start = self.layer + 1
        x = self._blocks(x, start, self.n_layers)
        pooled, _tokens = self.visual._pool(x)
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return pooled

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The unsplit open_clip image embedding (not normalised), for reference."""
        return self.model.encode_image(pixels)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Text embeddings [T, embed_dim] (not normalised) through the model's own tokenizer."""
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)

    def token_positions(self, token_set: str) -> slice:
        """Which tokens of the residual a token set keeps: all, patches (no class token) or cls."""
        if self.is_embedding:
            return slice(0, None)  # the one embedding token, whatever the set
        return {"all": slice(0, None), "patches": slice(1, None), "cls": slice(0, 1)}[token_set]


TOKEN_SETS = ("all", "patches", "cls")


def _check_local_dir(path: Path) -> None:
    if not path.is_dir():
        raise UserError(
            f"Model folder {path} does not exist; pass an open_clip NAME:TAG or a folder with {CONFIG_NAME}."
        )
    if not (path / CONFIG_NAME).is_file():
        raise UserError(f"Model folder {path} has no {CONFIG_NAME}; save models with sae.backbone.save_local_dir.")
    if not (path / WEIGHTS_NAME).is_file():
        raise UserError(
            f"Model folder {path} has no {WEIGHTS_NAME}; sae-studio loads weights from safetensors "
            "only and never unpickles .bin or .pth files."
        )
    try:
        atomic.parse_json((path / CONFIG_NAME).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path / CONFIG_NAME} is not valid JSON ({e}); restore or re-save the model folder.") from e


def load_backbone(
    spec: str | BackboneSpec,
    layer: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    site: str = RESID,
) -> Backbone:
    """Load an open_clip model through open_clip and split it at ``layer`` (default: the middle),
    on the residual stream or at block ``layer``'s attention or MLP output (``site``)."""
    if isinstance(spec, str):
        spec = BackboneSpec.parse(spec)
    if spec.local_dir is not None:
        _check_local_dir(spec.local_dir)
    try:
        checkpoint = _plain_checkpoint(spec)
        # the weights are read just below: no random initialisation, and no warning about it
        with _no_random_init_warning(), without_init() if checkpoint is not None else nullcontext():
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.name,
                pretrained=spec.pretrained,
                device=device,
                precision=precision,
                load_weights=checkpoint is None,
            )
        if checkpoint is not None and not load_into(model, checkpoint):
            # older key names: open_clip converts them (strictly: no tensor is left unread)
            open_clip.load_checkpoint(model, str(checkpoint), strict=True)
    except UserError:
        raise
    except Exception as e:  # open_clip raises RuntimeError/ValueError/OSError with long texts
        raise UserError(
            f"Could not load model {spec.model_id}: {str(e).splitlines()[0][:300]}; check the name "
            "and tag (open_clip.list_pretrained()) and that the weights can be downloaded or are cached."
        ) from e
    model.eval()
    n = len(getattr(getattr(model.visual, "transformer", None), "resblocks", []))
    tokenizer = LazyTokenizer(spec.name)
    return Backbone(model, spec.model_id, n // 2 if layer is None else layer, preprocess, tokenizer, site=site)


class LazyTokenizer:
    """open_clip's tokenizer for model ``name``, built on first use. Editing an image never
    tokenizes; building it reads and splits a 3 MB text in calls that hold the GIL for 50 to
    80 ms (a stall of the editor's GUI thread while a model loads), so only a text search pays."""

    def __init__(self, name: str):
        self.name = name
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._tokenizer is not None

    def _get(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                try:
                    self._tokenizer = open_clip.get_tokenizer(self.name)
                except Exception as e:  # a tokenizer that must be downloaded, offline
                    raise UserError(
                        f"Could not load {self.name}'s tokenizer, which text search needs: "
                        f"{str(e).splitlines()[0][:200]}."
                    ) from e
            return self._tokenizer

    def __call__(self, *args, **kwargs):
        return self._get()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._get(), attr)


def save_local_dir(
    model: Any,
    model_cfg: dict,
    path: str | Path,
    tokenizer: Any = None,
    image_mean: tuple[float, float, float] = open_clip.OPENAI_DATASET_MEAN,
    image_std: tuple[float, float, float] = open_clip.OPENAI_DATASET_STD,
) -> Path:
    """Save a model in open_clip's ``local-dir:`` layout with open_clip's own ``save_for_hf``.

    ``model_cfg`` is the open_clip config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``).
    A tokenizer without ``save_pretrained`` (open_clip's default ``SimpleTokenizer``) needs no
    files: open_clip rebuilds it from the config when the folder is loaded.
    """

    class _ConfigOnlyTokenizer:
        def save_pretrained(self, dest: Any) -> None:
            pass

    # Models built directly from a config (not by create_model) lack the preprocess fields.
    if getattr(model.visual, "image_mean", None) is None:
        model.visual.image_mean = tuple(image_mean)
        model.visual.image_std = tuple(image_std)
    if tokenizer is None or not hasattr(tokenizer, "save_pretrained"):
        tokenizer = _ConfigOnlyTokenizer()
    path = Path(path)
    save_for_hf(model, tokenizer, model_cfg, path, safe_serialization=True)
    return path
