"""What the window edits with: a workspace (the SAE folder on its encoder), the edit session on
it, and the sliders induced in this window. No Qt here: the window calls this from worker threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sae.demo  # noqa: F401  registers the demo world with the edit engine (sae.worlds)
from sae.decoders import Decoder
from sae.decoders.table import paired_decoder
from sae.induce import InducedSlider, induce_from_images
from sae.labels import SearchHit
from sae.units import Scale
from sae.workspace import Workspace

NOT_MEASURED = "not measured yet"  # an uncalibrated slider's reason until its calibration arrives


class EditorModel:
    def __init__(self, workspace: Workspace, decoder: Decoder | None = None):
        self.workspace = workspace
        workspace.sha256  # noqa: B018  hashed here, on the loading thread, not when a preset is first saved
        self.session = workspace.session(decoder)
        self.induced: dict[int, InducedSlider] = {}  # slider id (negative) -> induced slider

    @classmethod
    def demo(cls) -> EditorModel:
        """The shipped demo: its SAE on the tiny CLIP, painted by the demo decoder when it is there."""
        from sae.assets import DEMO
        from sae.decoders.registry import load_decoder

        workspace = Workspace.open(DEMO / "sae")
        decoder = load_decoder("demo", workspace.backbone) if (DEMO / "decoder").exists() else None
        return cls(workspace, decoder)

    @classmethod
    def open(cls, folder: str | Path) -> EditorModel:
        """The SAE in ``folder`` on the encoder it names; the window then loads the decoder known
        to paint that encoder's embeddings (it may download, with a dialog)."""
        return cls(Workspace.open(folder))

    def with_sae(self, folder: str | Path) -> EditorModel:
        """The SAE in ``folder``: on this model's encoder and decoder when it reads that encoder or
        names none (checked to fit its layer), else on the encoder it names, loaded here, and then
        without a decoder unless this one is the one known to paint that encoder's embeddings."""
        workspace = Workspace.open_beside(folder, self.session.backbone)
        _ = workspace.index  # read here, off the GUI thread: an index made for another width refuses the SAE
        decoder = self.session.decoder
        if workspace.backbone.model_id != self.session.backbone.model_id and (
            decoder is None or decoder.name != paired_decoder(workspace.backbone.model_id)
        ):
            decoder = None
        return EditorModel(workspace, decoder)

    @property
    def sae_folder(self) -> Path:
        return self.workspace.folder

    @property
    def index(self):
        return self.workspace.index

    @property
    def directions(self):
        return self.workspace.directions

    def add_induced(self, slider: InducedSlider) -> int:
        """Keep ``slider`` under a new negative id (latent ids are >= 0) and return the id."""
        key = min(self.induced, default=0) - 1
        self.induced[key] = slider
        return key

    def coverage_text(self) -> tuple[str, str | None]:
        """The current image's coverage line, and a warning sentence when it is far outside the
        SAE's pictures (on the shipped demo SAE, that the demo knows only its cartoon world)."""
        from sae.demo.build import coverage_warning

        coverage = self.session.coverage()
        line = coverage.line()
        return line[0].upper() + line[1:] + ".", coverage_warning(coverage, self.sae_folder)

    # -- sliders: induced ones by their negative ids, latents by theirs ---------------------------
    def label(self, latent: int) -> str:
        if latent in self.induced:
            return self.induced[latent].name
        return self.session.label(latent)

    def unit(self, latent: int) -> float:
        """The slider unit: the latent's typical max activation over the indexed images, else its
        activation on the open image (for an induced slider, 1: the examples' average difference)."""
        if latent in self.induced:
            return 1.0
        unit = self.workspace.unit(latent)
        if unit <= 0 and self.session.current is not None:
            unit = float(self.session.image_activations()[latent])
        return unit if unit > 0 else 1.0

    def scale(self, latent: int) -> Scale:
        """A slider's units as far as known now: calibrated if measured before, else today's
        (``calibrate`` measures them, off the GUI thread)."""
        if latent in self.induced:
            return Scale.typical(1.0, "an induced slider: 1 is the examples' average difference")
        found = self.workspace.calibrations.get(latent)
        return found.scale(self.unit(latent)) if found else Scale.typical(self.unit(latent), NOT_MEASURED)

    def calibrate(self, latent: int, between: Callable[[], None] = lambda: None) -> Scale:
        """Measure ``latent``'s calibrated units (seconds on a large encoder) and keep them;
        ``between`` is called between the measurement's encoder passes."""
        return self.workspace.calibration(latent, between=between).scale(self.unit(latent))

    def home_tokens(self, latent: int) -> str:
        """Which tokens a new slider edits: where its latent fires (an induced one: where all do)."""
        if latent in self.induced:
            return self.induced[latent].home_tokens(self.workspace.home_tokens)
        return self.workspace.home_tokens(latent)

    def only_tokens(self) -> tuple[str, str] | None:
        return self.workspace.only_tokens()

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

    def search(self, query: str, top: int = 20) -> list[SearchHit]:
        return self.workspace.search(query, top=top)

    def top_thumbnails(self, latent: int) -> list[Path]:
        return self.workspace.top_thumbnails(latent)

    def rename(self, latent: int, label: str) -> None:
        self.workspace.rename(latent, label)

    def induce(self, examples: list[str | Path], name: str, negatives: list[str | Path] | None = None) -> InducedSlider:
        """Induce a slider from example images (slow for a large encoder: call it off the GUI thread)."""
        return induce_from_images(self.session, examples, negatives, name, self.workspace.index)
