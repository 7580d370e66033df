"""What reading a published file gives: the project SAE and what the conversion could not settle."""

from __future__ import annotations

from typing import NamedTuple

from sae.model import SparseAutoencoder

# saev's TopK and MSAE's plain TopK keep the k largest pre-activations even when negative
NEGATIVE_TOPK_NOTE = (
    "its TopK keeps negative values among the k largest, which sae-studio's TopK zeroes: the two differ only "
    "on inputs with fewer than k positive pre-activations"
)


class Published(NamedTuple):
    layout: str  # e.g. "saev", "Prisma"
    sae: SparseAutoencoder
    notes: tuple[str, ...] = ()  # one sentence each, printed after importing
    needs_statistics: bool = False  # its inputs were normalised with statistics the file does not hold
