"""The shipped demo as one edit session: tiny CLIP, default SAE with its labels, demo decoder."""

from __future__ import annotations

from sae.backbone import load_backbone
from sae.decoders.registry import load_decoder
from sae.demo.build import DEMO
from sae.labels import read_labels
from sae.model import SparseAutoencoder
from sae.session import Session


def default_session(decoder: bool = True, device: str = "cpu") -> Session:
    """The shipped demo models in a ``Session`` (without the decoder when ``decoder`` is False)."""
    sae = SparseAutoencoder.load(DEMO / "sae", device=device)
    backbone = load_backbone(str(DEMO / "clip"), layer=sae.metadata.layer, device=device)
    dec = load_decoder("demo", backbone, device=device) if decoder and (DEMO / "decoder").exists() else None
    return Session(backbone, sae, dec, read_labels(DEMO / "sae"))
