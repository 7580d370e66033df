"""Decoders by name (an entry of ``sae.decoders.table``) or by a folder holding a saved pipeline."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch

from sae import atomic
from sae.assets import ASSETS
from sae.backbone import Backbone
from sae.decoders.base import Decoder
from sae.decoders.table import DECODERS, DecoderEntry
from sae.errors import UserError


def check_pair(entry: DecoderEntry, backbone: Backbone) -> None:
    """Checked before any download: pairing a decoder with the wrong encoder costs one sentence."""
    if entry.embed_dim is not None and backbone.embed_dim != entry.embed_dim:
        raise UserError(
            f"The {entry.name} decoder paints {entry.embed_dim}-d {entry.encoder} embeddings, but this encoder "
            f"makes {backbone.embed_dim}-d ones; load an SAE trained on {entry.encoder} first."
        )


def download_note(name: str) -> str | None:
    """What a hub decoder will download, if it is not in the cache yet (None otherwise)."""
    from sae.recipes import RECIPES, decoder_cached, estimate

    entry, recipe = DECODERS.get(name), RECIPES.get(name)
    if entry is None or entry.hub_id is None or recipe is None:
        return None
    try:
        if decoder_cached(entry.hub_id):
            return None
    except Exception:  # a cache that cannot be read is treated as empty
        pass
    return estimate(recipe)


def entry_for_folder(folder: Path) -> DecoderEntry:
    """The table entry whose pipeline class a saved pipeline folder names."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise UserError(f"Decoder '{folder}' is unknown; use {', '.join(DECODERS)} or a folder with a saved pipeline.")
    try:
        pipeline = atomic.parse_json(index.read_text()).get("_class_name", "")
    except (ValueError, OSError, AttributeError) as e:
        raise UserError(f"{index} is not a readable pipeline index ({e}).") from e
    for entry in DECODERS.values():
        if entry.pipeline == pipeline and entry.shipped is None:
            return entry
    known = sorted({e.pipeline for e in DECODERS.values()})
    raise UserError(f"{folder} holds a {pipeline or 'nameless'} pipeline; sae-studio paints with {' or '.join(known)}.")


def load_decoder(
    name: str,
    backbone: Backbone,
    device: str | torch.device = "cpu",
    fp16: bool = False,
    cpu_offload: bool = False,
    on_download: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Decoder:
    """``on_download(done_bytes, total_bytes)`` follows a hub decoder's first download, which
    ``should_stop()`` can cancel (``sae.download.DownloadCancelled``)."""
    entry = DECODERS.get(name)
    if entry is None:
        source = Path(name)
        entry, label = entry_for_folder(source), source.name
    else:
        check_pair(entry, backbone)
        label = name
        if entry.shipped is not None:
            source = ASSETS / entry.shipped
            if not (source / "model_index.json").is_file():
                raise UserError(f"{source} holds no decoder pipeline; run sae-studio demo build --stages movq,decoder.")
        else:
            from sae.download import hub_snapshot
            from sae.recipes import check_memory

            on_device = backbone.device.type == torch.device(device).type
            loaded = sum(p.numel() * p.element_size() for p in backbone.model.parameters()) / 1e9 if on_device else 0
            check_memory(name, str(device), fp16, cpu_offload, loaded)

            source = hub_snapshot(entry.hub_id, int(entry.download_gb * 1e9), on_download, should_stop)
    module = importlib.import_module(entry.module)
    return module.open_decoder(
        source,
        backbone,
        name=label,
        device=device,
        dtype=torch.float16 if fp16 else torch.float32,
        cpu_offload=cpu_offload,
    )


def import_pipelines() -> None:
    """Import the diffusers classes the table's decoders paint with (about 1,200 modules, 1.7 s).
    The editor does this behind its splash screen: imported later on a loading thread, they hold
    the GIL in long stretches and the window stalls."""
    import multiprocessing.synchronize  # noqa: F401 (tqdm's lock, for a pipeline's loading bar)

    import diffusers
    import diffusers.guiders  # noqa: F401 (searched for component classes while a pipeline loads)
    from diffusers.utils import torch_utils  # noqa: F401 (the Kandinsky decoder's noise)

    for entry in DECODERS.values():
        getattr(diffusers, entry.pipeline)  # naming a class imports its pipeline's package
