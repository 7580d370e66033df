"""The cached per-image pipeline that the editor and the CLI both drive.

``set_image`` runs the encoder's prefix once and caches the residual at layer L and its SAE
code; each slider state then costs only ``steer_residual`` + the encoder's suffix + the decoder:

    session.set_image(img)                       # prefix + SAE encode, cached
    session.embedding(edits)                     # steer + suffix  -> [e]
    session.render(edits, settings, on_step)     # + decoder       -> PIL image
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from PIL import Image

from sae.backbone import Backbone
from sae.coverage import Coverage, explained_share, origin
from sae.decoders import Decoder, DecodeSettings
from sae.errors import UserError
from sae.features import FeatureIndex
from sae.model import SparseAutoencoder, SparseCode, check_fits_layer
from sae.steer import Edit, latent_column, steer_residual
from sae.view import EncoderView

# Causal previews paint a latent on an empty canvas at PREVIEW_UNITS times its typical maximum,
# repainted at PREVIEW_STRENGTH: the pair that showed each detector's object most often (bench/README.md).
PREVIEW_STRENGTH = 0.9
PREVIEW_UNITS = 4.0


class Firing(NamedTuple):
    latent: int
    activation: float  # max over the image's tokens
    label: str


@dataclass
class CachedImage:
    image: Image.Image  # RGB, as given
    resid: torch.Tensor  # [T, d] residual entering block L
    code: SparseCode | torch.Tensor  # SAE code of resid[positions]
    embedding: torch.Tensor  # [e] unedited image embedding
    explained: float  # the SAE's explained share of its tokens (sae.coverage)


class Session:
    def __init__(
        self,
        backbone: Backbone,
        sae: SparseAutoencoder,
        decoder: Decoder | None = None,
        labels: dict[int, str] | None = None,
    ):
        backbone = backbone.for_sae(sae.metadata)  # split where the SAE reads (layer and site)
        check_fits_layer(sae, backbone.width, f"{backbone.where} of {backbone.model_id}")
        self.backbone, self.sae, self.decoder = backbone, sae.eval(), decoder
        self.labels = labels or {}
        self.positions = backbone.token_positions(sae.metadata.token_set)
        self.current: CachedImage | None = None
        self._canvas: CachedImage | None = None  # the neutral canvas of causal previews, cached
        self._reference: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)  # see compare_with

    # -- the image ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _cache(self, image: Image.Image) -> CachedImage:
        image = image.convert("RGB")
        pixels = self.backbone.preprocess(image)[None].to(self.backbone.device)
        resid, sae_input = (t[0].float() for t in self.backbone.split(pixels))
        tokens = sae_input[self.positions]
        code = self.sae.encode_sparse(tokens) if self.sae.cfg.arch == "topk" else self.sae.encode(tokens)
        embedding = self.backbone.suffix(resid[None])[0]
        recon = self.sae.decode_sparse(code) if isinstance(code, SparseCode) else self.sae.decode(code)
        centre = self._reference[0] if self._reference[0] is not None else origin(self.sae)
        explained = float(explained_share(tokens[None], recon[None], centre)[0])
        return CachedImage(image, resid, code, embedding, explained)

    @torch.inference_mode()
    def image_codes(self, images: Sequence[Image.Image], batch: int = 32) -> torch.Tensor:
        """[N, d_sae]: each image's max activation per latent over its tokens (the current image stays)."""
        out = []
        for i in range(0, len(images), batch):
            pixels = torch.stack([self.backbone.preprocess(im.convert("RGB")) for im in images[i : i + batch]])
            sae_input = self.backbone.split(pixels.to(self.backbone.device))[1].float()
            out.append(self.sae.encode(sae_input[:, self.positions]).amax(1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.sae.d_sae)

    def set_image(self, image: Image.Image) -> CachedImage:
        self.current = self._cache(image)
        return self.current

    def _need_image(self) -> CachedImage:
        if self.current is None:
            raise UserError("No image is loaded; open an image first.")
        return self.current

    def compare_with(self, index: FeatureIndex | None) -> None:
        """Measure the images set from now on against ``index``'s pictures (``coverage``), when
        the index has coverage figures; else against the SAE's own origin, with nothing to compare."""
        if index is not None and index.explained is not None and index.centre is not None:
            self._reference = (index.centre, index.explained)
        else:
            self._reference = (None, None)

    def coverage(self) -> Coverage:
        """How well the SAE reads the current image, beside the pictures of the index compared with."""
        return Coverage(self._need_image().explained, self._reference[1])

    # -- features -----------------------------------------------------------------------------
    def label(self, latent: int) -> str:
        return self.labels.get(latent, f"latent {latent}")

    @torch.inference_mode()
    def image_activations(self) -> torch.Tensor:
        """[d_sae]: each latent's max activation over the image's tokens."""
        cur = self._need_image()
        code = cur.code
        if isinstance(code, SparseCode):
            out = torch.zeros(self.sae.d_sae)
            return out.scatter_reduce_(0, code.indices.reshape(-1).cpu(), code.values.reshape(-1).float().cpu(), "amax")
        return code.amax(0).float().cpu()

    def fires(self, n: int = 20) -> list[Firing]:
        """The latents that fire most on the current image, strongest first."""
        acts = self.image_activations()
        top = torch.topk(acts, min(n, int((acts > 0).sum())))
        return [Firing(int(i), float(v), self.label(int(i))) for v, i in zip(top.values, top.indices, strict=True)]

    @torch.inference_mode()
    def heatmap(self, latent: int) -> torch.Tensor:
        """[grid, grid] activation of ``latent`` on each patch of the current image."""
        cur = self._need_image()
        col = latent_column(cur.code, latent).float().cpu()
        n_patches = self.backbone.n_patches
        if n_patches == 0:
            return torch.zeros(0, 0)  # an embedding-level SAE sees no patches
        grid = int(round(n_patches**0.5))
        patches = col[-n_patches:] if col.shape[0] >= n_patches else torch.zeros(n_patches)
        return patches.reshape(grid, grid)

    # -- edits --------------------------------------------------------------------------------
    @torch.inference_mode()
    def embedding(self, edits: Sequence[Edit]) -> torch.Tensor:
        """[e]: the image embedding after ``edits`` (exactly the unedited one for no edits)."""
        cur = self._need_image()
        if self.backbone.is_embedding and any(e.mask for e in edits):
            raise UserError("This SAE works on the whole image embedding, so its edits cannot be limited to a region.")
        edited = steer_residual(cur.resid, self.sae, cur.code, edits, self.positions)
        if edited is cur.resid:
            return cur.embedding
        return self.backbone.suffix(edited[None])[0]

    def render(
        self, edits: Sequence[Edit], settings: DecodeSettings, on_step: Callable[[int, int], None] | None = None
    ) -> Image.Image:
        """The edited image: the decoder paints the edited embedding, starting from the input."""
        if self.decoder is None:
            raise UserError("No decoder is loaded; choose one in the generation settings.")
        cur = self._need_image()
        return self.decoder.decode(
            self.embedding(edits)[None], cur.image, settings, on_step, cur.embedding[None], self.brushed(edits)
        )

    def view(self) -> EncoderView:
        """Which part of the current image the encoder reads, and where its patches lie on it."""
        return self.backbone.view(*self._need_image().image.size)

    def brushed(self, edits: Sequence[Edit]) -> torch.Tensor | None:
        """[h, w] 0/1 over the current image: the patches the edits are limited to, when every
        edit is limited (the decoder then repaints only there), else None."""
        if not edits or not self.backbone.n_patches or any(e.mask is None for e in edits):
            return None
        return self.view().area({p for e in edits for p in e.mask})

    # -- causal preview -------------------------------------------------------------------------
    def causal_preview(
        self,
        latent: int,
        value: float,
        settings: DecodeSettings,
        on_step: Callable[[int, int], None] | None = None,
        canvas: Image.Image | None = None,
        tokens: str = "all",
    ) -> Image.Image:
        """What ``latent`` does on its own: ``value`` added to it on ``tokens`` (``sae.steer.TOKENS``)
        of a neutral canvas (an empty scene for the demo), decoded from that canvas. Leaves the
        current image alone."""
        if self.decoder is None:
            raise UserError("No decoder is loaded; choose one in the generation settings.")
        if not 0 <= latent < self.sae.d_sae:
            raise UserError(f"Latent {latent} does not exist; this SAE has latents 0 to {self.sae.d_sae - 1}.")
        if canvas is None:
            if self._canvas is None:
                from sae.neutral import preview_canvas

                self._canvas = self._cache(preview_canvas(self.backbone))
            cached = self._canvas
        else:
            cached = self._cache(canvas)
        with torch.inference_mode():
            edited = steer_residual(
                cached.resid, self.sae, cached.code, [Edit(latent, "add", value, tokens=tokens)], self.positions
            )
            embedding = self.backbone.suffix(edited[None])[0]
        # the whole canvas is repainted: it holds nothing to keep, and an edit region found on a
        # featureless canvas is scattered cells too small for an object to appear in
        whole = replace(settings, region="whole")
        return self.decoder.decode(embedding[None], cached.image, whole, on_step)
