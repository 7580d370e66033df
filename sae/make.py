"""A new SAE from a folder of images, in one resumable chain: extract -> train -> index -> label.

This is what the editor's Train SAE dialog runs in the background (and ``sae-studio index`` runs
its last two stages). Every stage reports through ``on_event(stage, done, total, metrics)`` and
checks ``should_stop()``; a stopped chain leaves each stage's checkpoint behind, and calling
``make_sae`` again with the same spec continues where it stopped.

    images ─extract─> <out>.activations/ ─train─> <out>/ (SAELens layout) ─index─> <out>/index/
           ─label─> <out>/labels.json + index/directions.safetensors
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from sae.backbone import Backbone, load_backbone
from sae.configs import TrainConfig
from sae.errors import UserError
from sae.model import SparseAutoencoder

STAGES = ("extract", "train", "index", "label")

Event = Callable[[str, int, int, dict], None]


@dataclass
class NewSae:
    images: str  # folder of images, searched recursively
    out: str  # SAE folder to write
    model: str  # encoder spec (e.g. a demo CLIP folder, or ViT-bigG-14:laion2b_s39b_b160k)
    layer: int | None = None  # None: the middle block
    # the training options, as `sae-studio train` takes them (make_sae fills in acts, out and device)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(acts="", out=""))
    device: str = "auto"
    vocabulary: str = "auto"

    @property
    def activations(self) -> Path:
        """Where the extracted activations live: beside the SAE, so deleting both is one look."""
        out = Path(self.out)
        return out.parent / f"{out.name}.activations"


class Stopped(Exception):
    """The chain was asked to stop; every stage so far is checkpointed."""


def make_sae(
    spec: NewSae, on_event: Event | None = None, should_stop: Callable[[], bool] | None = None
) -> SparseAutoencoder:
    """Run the chain; raises ``Stopped`` if ``should_stop`` said so (run again to continue)."""
    from sae.activations import extract
    from sae.device import pick_device
    from sae.train import Trainer

    def event(stage: str, done: int, total: int, metrics: dict | None = None) -> None:
        if on_event:
            on_event(stage, done, total, metrics or {})

    def check(stage: str) -> None:
        if should_stop and should_stop():
            raise Stopped(f"Stopped during {stage}; start again to continue from the last checkpoint.")

    out = Path(spec.out)
    if not Path(spec.images).is_dir():
        raise UserError(f"{spec.images} is not a folder of images.")
    device = pick_device(spec.device)
    backbone = load_backbone(spec.model, spec.layer, device=device)
    event("extract", 0, 1)
    manifest = extract(
        backbone,
        spec.images,
        spec.activations,
        progress=False,
        on_progress=lambda d, t: event("extract", d, t),
        should_stop=should_stop,
    )
    if not manifest.complete:
        check("extraction")
    finished = (out / "cfg.json").is_file() and not (out / "trainer_state.json").is_file()
    if not finished:
        cfg = replace(
            spec.train,
            acts=str(spec.activations),
            out=str(out),
            device=spec.device,
            resume=(out / "trainer_state.json").is_file(),
        )
        trainer = Trainer(
            cfg, progress=False, on_step=lambda s, t, m: event("train", s, t, m), should_stop=should_stop, log_every=10
        )
        trainer.run()
        if trainer.step < trainer.total_steps:
            check("training")
    sae = SparseAutoencoder.load(out, device=device)
    backbone = backbone.for_sae(sae.metadata)
    index_and_label(out, backbone, sae, spec.images, spec.vocabulary, on_event=on_event, should_stop=should_stop)
    return sae


def index_and_label(
    folder: str | Path,
    backbone: Backbone,
    sae: SparseAutoencoder,
    images: str | Path,
    vocabulary: str = "auto",
    on_event: Event | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> dict[int, dict]:
    """Index ``sae`` over ``images`` (incremental) and label every latent; returns the labels."""
    from sae.features import build_index
    from sae.labels import label_sae

    folder = Path(folder)
    index = build_index(
        folder,
        backbone,
        sae,
        images,
        progress=progress,
        should_stop=should_stop,
        on_progress=(lambda d, t: on_event("index", d, t, {})) if on_event else None,
    )
    if should_stop and should_stop():
        raise Stopped("Stopped during indexing; start again to continue.")
    if on_event:
        on_event("label", 0, 1, {})
    strengths = index.typical_max()
    strengths = torch.where(strengths > 0, strengths, index.max.clamp_min(1e-3))
    entries = label_sae(
        folder,
        backbone,
        sae,
        strengths,
        neutral_pixels(backbone, index),
        vocabulary_for(backbone, vocabulary),
        index.evidence,
    )
    if on_event:
        on_event("label", 1, 1, {})
    return entries


DEMO_WORLD = "sae-studio demo world"  # whose vocabulary --vocabulary demo names (sae.worlds)


def vocabulary_for(backbone: Backbone, choice: str = "auto") -> Sequence[tuple[str, str]]:
    """demo, everyday, a text file, or auto (demo for the demo world's CLIP, else everyday)."""
    from sae.vocabulary import everyday_vocabulary, read_vocabulary
    from sae.worlds import named, world_of

    if choice == "auto":
        world = world_of(backbone)
        return world.vocabulary() if world is not None else everyday_vocabulary()
    if choice == "everyday":
        return everyday_vocabulary()
    if choice == "demo":
        world = named(DEMO_WORLD)
        if world is None:
            raise UserError("The demo vocabulary needs the demo world loaded; run this through sae-studio.")
        return world.vocabulary()
    return read_vocabulary(choice)


def neutral_pixels(backbone: Backbone, index) -> torch.Tensor:
    """Neutral images for effect directions: the demo world's empty scenes, or 16 indexed images."""
    from sae.worlds import world_of

    if world_of(backbone) is not None:
        from sae.neutral import neutral_images

        return torch.stack([backbone.preprocess(im) for im in neutral_images(backbone)]).to(backbone.device)
    from sae.evaluate import load_pixels

    paths = [Path(index.root) / s for s in index.sources[:: max(1, len(index.sources) // 16)]]
    return load_pixels(backbone, paths, limit=16).to(torch.float32)
