"""An SAE folder opened for editing: the SAE and its encoder, with what the folder keeps beside
the weights (labels, feature index, search directions) and the identity presets carry. The
command line and the editor both work through one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import torch
from PIL import Image

from sae import presets
from sae.backbone import Backbone, BackboneSpec, beside, load_backbone
from sae.calibration import (
    FIRING_PICTURES,
    NEUTRAL_PICTURES,
    ORDINARY_PICTURES,
    Calibration,
    CalibrationStore,
    Pictures,
    Responses,
    calibrated,
    read,
    response,
    separation,
)
from sae.decoders import Decoder, DecodeSettings
from sae.decoders.table import decoder_for_encoder
from sae.errors import UserError
from sae.features import FeatureIndex, has_index, thumbnail_path
from sae.formats import load_any
from sae.labels import (
    FeatureDirections,
    SearchHit,
    label_groups,
    load_directions,
    read_label_entries,
    rename,
    search,
)
from sae.model import SparseAutoencoder, check_fits_layer
from sae.neutral import neutral_images
from sae.session import Session
from sae.steer import Edit


class Workspace:
    def __init__(self, folder: str | Path, sae: SparseAutoencoder, backbone: Backbone):
        backbone = backbone.for_sae(sae.metadata)
        check_fits_layer(sae, backbone.width, f"{backbone.where} of {backbone.model_id}")
        self.folder, self.sae, self.backbone = Path(folder), sae, backbone
        # labels.json read once; a label for a latent this SAE lacks (a hand-edited file) is left out
        entries = {k: v for k, v in read_label_entries(self.folder).items() if k < sae.d_sae}
        self.labels = {k: v["label"] for k, v in entries.items()}
        self.named = {k for k, v in entries.items() if v.get("source") == "user"}  # first when searched by name
        self._directions: FeatureDirections | None = None
        self._ordinary_read = False  # the ordinary pictures were read (none may have been found)

    @cached_property
    def sha256(self) -> str:
        """The weights' hash that presets name (read once, when a preset is first made or checked)."""
        return presets.sae_sha256(self.folder)

    @cached_property
    def index(self) -> FeatureIndex | None:
        index = FeatureIndex.load(self.folder) if has_index(self.folder) else None
        if index is not None:
            index.check_fits(self.sae.d_sae, self.folder)
        return index

    @classmethod
    def open(
        cls,
        folder: str | Path,
        model: str | None = None,
        device: str | torch.device = "cpu",
        backbone: Backbone | None = None,
    ) -> Workspace:
        """The SAE in ``folder`` (any layout ``sae.formats`` reads) on its encoder: ``backbone``
        when given (checked to fit), else ``model`` or the one its metadata names."""
        folder = Path(folder)
        if backbone is not None:
            return cls(folder, load_any(folder, device=backbone.device), backbone)
        sae = load_any(folder, device=device)
        spec = model or beside(sae.metadata.backbone, folder)  # (the demo SAE's: its ../clip)
        if not spec:
            raise UserError(f"{folder} does not say which encoder it belongs to; pass --model NAME:TAG.")
        return cls._on(folder, sae, spec, device)

    @classmethod
    def open_beside(cls, folder: str | Path, backbone: Backbone) -> Workspace:
        """The SAE in ``folder`` on ``backbone`` when it reads that encoder or names none (checked
        to fit), else on the encoder it names, loaded on ``backbone``'s device: how the editor
        switches SAEs, keeping its encoder when it can."""
        folder = Path(folder)
        sae = load_any(folder, device=backbone.device)
        spec = beside(sae.metadata.backbone, folder) if sae.metadata.backbone else ""
        if not spec or BackboneSpec.parse(spec).model_id == backbone.model_id:
            return cls(folder, sae, backbone)
        return cls._on(folder, sae, spec, backbone.device)

    @classmethod
    def _on(cls, folder: Path, sae: SparseAutoencoder, spec: str, device: str | torch.device) -> Workspace:
        """``sae`` on the encoder ``spec`` names, loaded here."""
        if sae.metadata.layer == -1:
            raise UserError(
                f"{folder} does not say which layer it was trained on; make it a project SAE with "
                f"sae-studio import {folder} --layer L --model NAME:TAG -o FOLDER."
            )
        return cls(folder, sae, load_backbone(spec, layer=sae.metadata.layer, device=device, site=sae.metadata.site))

    def default_decoder(self) -> str:
        return decoder_for_encoder(self.sae.metadata.backbone)

    def session(self, decoder: Decoder | None = None) -> Session:
        """An edit session on this SAE; it shares the workspace's labels, so renames show at once."""
        session = Session(self.backbone, self.sae, decoder, self.labels)
        session.compare_with(self.index)
        return session

    # -- what a slider starts from --------------------------------------------------------------
    def unit(self, latent: int) -> float:
        """A latent's slider unit: its typical max activation over the indexed images (0 when unknown)."""
        return float(self.index.typical_max(latent)[0]) if self.index is not None else 0.0

    @cached_property
    def calibrations(self) -> CalibrationStore:
        return CalibrationStore(self.folder)

    def calibration(self, latent: int, keep: bool = True, between: Callable[[], None] = lambda: None) -> Calibration:
        """``latent``'s calibrated slider unit and range (``sae.calibration``): measured the first
        time it is asked for and kept beside the index (``keep`` False: in memory until
        ``keep_calibrations``); ``between`` is called between its encoder passes."""
        self.check_latent(latent)
        found = self.calibrations.get(latent)
        if found is None:
            found = calibrated(self.responses(latent, between), typical=self.unit(latent))
            self.calibrations.entries[latent] = found
            if keep:
                self.keep_calibrations()
        return found

    def keep_calibrations(self) -> None:
        """Write the calibrations measured so far (a read-only folder keeps them in memory only)."""
        try:
            self.calibrations.save()
        except OSError:
            pass

    def responses(self, latent: int, between: Callable[[], None] = lambda: None) -> Responses:
        """How far ``latent``'s slider moves the image embedding, upward on neutral pictures and
        downward on the indexed pictures it fires on most (``sae.calibration.response``), and how
        far those pictures lie from ordinary ones."""
        tokens, firing = self.home_tokens(latent), self._firing_pixels(latent)
        between()
        up = response(self.backbone, self.sae, latent, tokens, self._neutral, 1.0, between)
        between()
        top = None if firing is None else read(self.backbone, self.sae, firing)
        down = response(self.backbone, self.sae, latent, tokens, self._neutral if top is None else top, -1.0, between)
        return Responses(up, down, None if top is None else separation(top, self._ordinary(between)))

    @cached_property
    def _neutral(self) -> Pictures:
        images = neutral_images(self.backbone)
        images = images[:: max(1, len(images) // NEUTRAL_PICTURES)][:NEUTRAL_PICTURES]  # spread over them
        pixels = torch.stack([self.backbone.preprocess(im.convert("RGB")) for im in images])
        return read(self.backbone, self.sae, pixels)

    def _ordinary(self, between: Callable[[], None]) -> torch.Tensor | None:
        """[e]: the mean normalised embedding of up to ORDINARY_PICTURES indexed pictures spread
        over the index (their thumbnails), read once, in batches with ``between`` before each, and
        kept with the calibrations; None without any."""
        store = self.calibrations
        if store.ordinary is not None and store.ordinary.shape[-1] != self._neutral.base.shape[-1]:
            store.ordinary = None  # kept for another encoder's embeddings: read again for this one
        if store.ordinary is None and not self._ordinary_read:
            ids = torch.unique(self.index.top_images[self.index.top_images >= 0]).tolist() if self.index else []
            paths = [thumbnail_path(self.folder, i) for i in ids[:: max(1, len(ids) // ORDINARY_PICTURES)]]
            paths = paths[:ORDINARY_PICTURES]
            sums, count = None, 0
            for start in range(0, len(paths), 8):
                pixels = self._thumbnail_pixels(paths[start : start + 8])
                if pixels is not None:
                    between()
                    base = read(self.backbone, self.sae, pixels).base
                    sums, count = (base.sum(0) if sums is None else sums + base.sum(0)), count + len(base)
            store.ordinary = None if sums is None else sums / count
            self._ordinary_read = True
        return store.ordinary

    def _firing_pixels(self, latent: int) -> torch.Tensor | None:
        """The indexed pictures ``latent`` fires on most (their thumbnails), None without any."""
        return self._thumbnail_pixels(self.top_thumbnails(latent)[:FIRING_PICTURES])

    def _thumbnail_pixels(self, paths: list[Path]) -> torch.Tensor | None:
        """``paths`` (thumbnails) preprocessed for the encoder, None when none can be read."""
        images = []
        for path in paths:
            try:
                images.append(self.backbone.preprocess(Image.open(path).convert("RGB")))
            except OSError:
                continue  # a thumbnail gone or damaged: the others serve
        return torch.stack(images) if images else None

    def home_tokens(self, latent: int) -> str:
        """Where the latent fires in the indexed images (every token without an index)."""
        return self.index.home_tokens(latent) if self.index is not None else "all"

    def tokens_for(self, choice: str) -> Callable[[int], str]:
        """latent -> the tokens its edit touches: ``choice``, or for "home" where it fires."""
        return self.home_tokens if choice == "home" else (lambda _latent: choice)

    def only_tokens(self) -> tuple[str, str] | None:
        """(tokens, why) when the SAE reads one kind of token, so an edit has no choice of tokens."""
        if self.backbone.is_embedding:
            return "all", "This SAE reads the image embedding: one token"
        kind = self.sae.metadata.token_set
        if kind == "patches":
            return "patches", "This SAE reads the image patches only"
        if kind == "cls":
            return "class", "This SAE reads the class token only"
        return None

    def check_latent(self, latent: int) -> None:
        if not 0 <= latent < self.sae.d_sae:
            raise UserError(f"Latent {latent} does not exist; this SAE has latents 0 to {self.sae.d_sae - 1}.")

    # -- labels and search ----------------------------------------------------------------------
    @property
    def directions(self) -> FeatureDirections:
        if self._directions is None:
            if self.index is None:
                raise UserError(
                    f"{self.folder} has no feature index yet; run sae-studio index on it to search its features."
                )
            self._directions = load_directions(self.folder, self.index)
        return self._directions

    @torch.inference_mode()
    def search(self, query: str, top: int = 20) -> list[SearchHit]:
        if not query.strip():
            return []
        q = torch.nn.functional.normalize(self.backbone.encode_text([query]), dim=-1)[0]
        return search(query, q, self.directions, self.labels, top=top, named=self.named, groups=self.label_groups)

    @cached_property
    def label_groups(self) -> dict[str, list[int]]:
        return label_groups(self.labels)

    def rename(self, latent: int, label: str) -> None:
        self.check_latent(latent)
        rename(self.folder, latent, label)
        self.labels[latent] = label.strip()
        self.named.add(latent)
        self.__dict__.pop("label_groups", None)  # regrouped at the next search

    def top_thumbnails(self, latent: int) -> list[Path]:
        if self.index is None:
            return []
        return [
            p
            for i in self.index.top_images[latent].tolist()
            if i >= 0 and (p := thumbnail_path(self.folder, i)).is_file()
        ]

    # -- presets --------------------------------------------------------------------------------
    def identity(self) -> presets.SaeIdentity:
        sae = self.sae
        return presets.SaeIdentity(self.sha256, sae.d_sae, sae.d_in, sae.metadata.backbone, sae.metadata.layer)

    def preset(self, edits: Sequence[Edit] = (), settings: DecodeSettings | None = None) -> presets.Preset:
        return presets.Preset(self.identity(), list(edits), settings or DecodeSettings())

    def check_preset(self, preset: presets.Preset, source: str) -> None:
        presets.check_for(preset, self.sha256, self.sae.d_sae, source=source)
