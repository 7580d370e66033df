"""What the window shows, gathered in one place: the session and its SAE folder's index, labels,
feature directions and identity. No Qt here: the window calls this from worker threads."""

from __future__ import annotations

from pathlib import Path

import torch

import sae.demo  # noqa: F401  registers the demo world with the edit engine (sae.worlds)
from sae import presets
from sae.decoders import DecodeSettings
from sae.errors import UserError
from sae.features import FeatureIndex, thumbnail_path
from sae.induce import InducedSlider, induce_from_images
from sae.labels import (
    FeatureDirections,
    load_directions,
    named_by_people,
    read_labels,
    rename,
    search,
)
from sae.session import Session
from sae.steer import Edit


class EditorModel:
    def __init__(self, session: Session, sae_folder: str | Path, decoder_name: str = "demo"):
        self.session = session
        self.decoder_name = decoder_name
        self.sae_folder = Path(sae_folder)
        self.sha256 = presets.sae_sha256(self.sae_folder)
        try:
            self.index: FeatureIndex | None = FeatureIndex.load(self.sae_folder)
        except UserError:
            self.index = None
        try:
            self.directions: FeatureDirections | None = load_directions(self.sae_folder, self.index)
        except UserError:
            self.directions = None
        self.session.labels = read_labels(self.sae_folder)
        self.session.compare_with(self.index)
        self.named = named_by_people(self.sae_folder)  # latents a person labelled: first when searched by name
        self.induced: dict[int, InducedSlider] = {}  # slider id (negative) -> induced slider

    def add_induced(self, slider: InducedSlider) -> int:
        """Keep ``slider`` under a new negative id (latent ids are >= 0) and return the id."""
        key = min(self.induced, default=0) - 1
        self.induced[key] = slider
        return key

    @classmethod
    def demo(cls) -> EditorModel:
        from sae.demo.build import DEMO
        from sae.demo.session import default_session

        return cls(default_session(), DEMO / "sae")

    def coverage_text(self) -> tuple[str, str | None]:
        """The current image's coverage line, and a warning sentence when it is far outside the
        SAE's pictures (on the shipped demo SAE, that the demo knows only its cartoon world)."""
        from sae.demo.build import coverage_warning

        coverage = self.session.coverage()
        line = coverage.line()
        return line[0].upper() + line[1:] + ".", coverage_warning(coverage, self.sae_folder)

    # -- features -----------------------------------------------------------------------------
    def label(self, latent: int) -> str:
        if latent in self.induced:
            return self.induced[latent].name
        return self.session.label(latent)

    def unit(self, latent: int) -> float:
        """The slider unit: the latent's typical max activation over the indexed images (for an
        induced slider, 1: the examples' average difference)."""
        if latent in self.induced:
            return 1.0
        if self.index is not None:
            u = float(self.index.typical_max()[latent])
            if u > 0:
                return u
        if self.session.current is not None:
            a = float(self.session.image_activations()[latent])
            if a > 0:
                return a
        return 1.0

    def home_tokens(self, latent: int) -> str:
        """Which tokens a new slider of ``latent`` edits: where the latent fires in the indexed
        images (an induced slider: where all its latents fire; without an index, every token)."""
        if self.index is None:
            return "all"
        if latent in self.induced:
            return self.induced[latent].home_tokens(self.index.home_tokens)
        return self.index.home_tokens(latent)

    def only_tokens(self) -> tuple[str, str] | None:
        """(tokens, why) when the SAE reads one kind of token, so a slider has no choice of tokens;
        None when it reads them all."""
        session = self.session
        if session.backbone.is_embedding:
            return "all", "This SAE reads the image embedding: one token"
        kind = session.sae.metadata.token_set
        if kind == "patches":
            return "patches", "This SAE reads the image patches only"
        if kind == "cls":
            return "class", "This SAE reads the class token only"
        return None

    def current_activation(self, latent: int) -> float:
        """How strongly the open image shows the latent (an induced slider: its projection, in
        units of the examples' average difference)."""
        if self.session.current is None:
            return 0.0
        acts = self.session.image_activations()
        if latent in self.induced:
            w = self.induced[latent].weights
            return float(sum(a * float(acts[i]) for i, a in w) / max(1e-12, sum(a * a for _, a in w)))
        return float(acts[latent])

    @torch.inference_mode()
    def search(self, query: str, top: int = 20):
        if not query:
            return []
        if self.directions is None:
            raise UserError("This SAE has no feature index yet; run sae-studio index on it to search its features.")
        q = torch.nn.functional.normalize(self.session.backbone.encode_text([query]), dim=-1)[0]
        return search(query, q, self.directions, self.session.labels, top=top, named=self.named)

    def top_thumbnails(self, latent: int) -> list[Path]:
        if self.index is None:
            return []
        return [p for i in self.index.top_images[latent].tolist() if i >= 0 and (p := thumbnail_path(self.sae_folder, i)).is_file()]

    def rename(self, latent: int, label: str) -> None:
        rename(self.sae_folder, latent, label)
        self.session.labels[latent] = label.strip()
        self.named.add(latent)

    def induce(self, examples: list[str | Path], name: str, negatives: list[str | Path] | None = None) -> InducedSlider:
        """Induce a slider from example images (slow for a large encoder: call it off the GUI thread)."""
        return induce_from_images(self.session, examples, negatives, name, self.index)

    # -- presets ------------------------------------------------------------------------------
    def make_preset(self, edits: list[Edit], settings: DecodeSettings, decoder: str | None = None) -> presets.Preset:
        sae = self.session.sae
        return presets.Preset(
            presets.SaeIdentity(self.sha256, sae.d_sae, sae.d_in, sae.metadata.backbone, sae.metadata.layer),
            list(edits), presets.DecoderSettings(decoder or self.decoder_name, settings.steps, settings.strength,
                                                 settings.guidance, settings.seed, settings.region),
        )

    def check_preset(self, preset: presets.Preset, source: str) -> None:
        presets.check_for(preset, self.sha256, self.session.sae.d_sae, source=source)
