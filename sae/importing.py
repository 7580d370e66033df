"""Making another tool's SAE a project SAE, once: what ``sae-studio import`` and the editor's
*Import published SAE file…* both run.

Folders of SAELens and sparsify and the published pickles (``sae.published``) are read, placed on
their encoder and layer, checked to fit it, completed with input statistics where the file lacks
them, and saved in sae-studio's own layout (SAELens', safetensors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sae.backbone import Backbone, load_backbone
from sae.download import HUB_PREFIX, hub_sae_folder
from sae.errors import UserError
from sae.formats import detect, load_any
from sae.hooks import RESID, SITE_WORDS
from sae.model import SparseAutoencoder, check_fits_layer
from sae.published import find_pickle, load_published
from sae.published.statistics import apply_statistics


@dataclass
class Imported:
    kind: str  # "saelens", "sparsify", "saev", ...
    sae: SparseAutoencoder
    out: Path
    notes: list[str] = field(default_factory=list)  # one sentence each

    @property
    def place(self) -> str:
        m = self.sae.metadata
        return f"layer {m.layer}" if m.site == RESID else f"the {SITE_WORDS[m.site]} of block {m.layer}"

    def summary(self) -> str:
        m = self.sae.metadata
        return (
            f"imported the {self.kind} SAE ({self.sae.d_sae:,} latents, d_in {self.sae.d_in}, {self.place}"
            f"{', encoder ' + m.backbone if m.backbone else ''}) into {self.out}"
            + ("" if m.backbone else "; pass --model when you use it")
        )


def import_sae(
    source: str | Path,
    out: str | Path,
    layer: int | None = None,
    model: str | None = None,
    images: str | Path | None = None,
    backbone: Backbone | None = None,
    on_download: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Imported:
    """Convert ``source`` into a project SAE at ``out``. ``model``/``layer`` override what the
    source says; ``backbone`` (an encoder already loaded, say the editor's) stands in for both
    when the source names neither. ``images`` feeds the statistics an early saev file lacks.
    ``on_download(done_bytes, total_bytes)`` follows the download of a hub SAE, which ``should_stop()``
    cancels (``sae.download.DownloadCancelled``)."""
    published = None
    if str(source).startswith(HUB_PREFIX):  # fetched once into the Hugging Face cache
        source = hub_sae_folder(str(source), on_progress=on_download, should_stop=should_stop)
    try:
        kind = detect(source)
    except UserError:
        if find_pickle(source) is None:
            raise
        if layer is None and backbone is not None and _names_no_layer(source):
            layer = backbone.layer
        published = load_published(source, layer)  # a published pickle, read safely once
        kind, sae, notes = published.layout, published.sae, list(published.notes)
        sae.check_finite(source)
    else:
        sae, notes = load_any(source, layer=layer), []
    if sae.metadata.layer == -1:
        raise UserError(f"{source} does not name a residual-stream hook point; pass --layer L (or --layer embedding).")
    if model:
        sae.metadata.backbone = model
    elif not sae.metadata.backbone and backbone is not None:
        sae.metadata.backbone = backbone.model_id
    needs_statistics = published is not None and published.needs_statistics
    if needs_statistics and not (images and sae.metadata.backbone):
        raise UserError(
            f"{source} is a {kind} SAE: it read inputs normalised with a mean and scale it did not save; pass "
            "--images DIR (pictures like its training set) and --model so they can be estimated."
        )
    if images and not needs_statistics:
        notes.append(f"--images was not needed: the {kind} file holds everything its activations depend on.")
    spec = sae.metadata.backbone
    if spec and not model and backbone is None and not _encoder_at_hand(spec):
        # a published SAE names a real encoder that may not be downloaded: check its fit when first used
        notes.append(f"{spec} is not downloaded yet, so the SAE's fit to it is checked when it is first used.")
    elif spec:
        if backbone is None or backbone.model_id != spec:
            backbone = load_backbone(spec, layer=sae.metadata.layer, site=sae.metadata.site)
        backbone = backbone.for_sae(sae.metadata)
        check_fits_layer(sae, backbone.width, f"{backbone.where} of {backbone.model_id}")
        sae.metadata.backbone_fingerprint = backbone.fingerprint
        if needs_statistics:
            notes.append(apply_statistics(published, backbone, images))
    sae.save(out)
    return Imported(kind, sae, Path(out), notes)


def _names_no_layer(source: str | Path) -> bool:
    """True for a published file that does not say which layer it reads (saev's)."""
    from sae.published.saev import header_only

    path = find_pickle(source)
    return path is not None and header_only(path) is not None


def _encoder_at_hand(spec: str) -> bool:
    """A local model folder, or an open_clip NAME:TAG whose weights are in the Hugging Face cache."""
    if ":" not in spec or Path(spec).exists():
        return True
    from sae.recipes import encoder_cached

    try:
        return encoder_cached(spec)
    except Exception:  # an unknown name: loading it says what is wrong
        return True
