"""How well an SAE reads a picture, and how that compares with the pictures it was indexed on.

A picture's *explained share* is one minus the SAE's fraction of variance unexplained over the
tokens it reads: ``1 - sum ||x - x_hat||^2 / sum ||x - c||^2``, where ``c`` is the mean token of
the first pictures indexed (kept in the index, so every picture is measured from one centre).
A picture unlike the ones the SAE was trained on (a photograph shown to the demo's cartoon SAE)
is reconstructed far worse than the indexed ones, and its feature labels may not mean there what
they say.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sae.model import SparseAutoencoder

# A picture is far outside when its unexplained share is more than FACTOR times the indexed
# pictures' 99th percentile of it (or, with no indexed pictures to compare with, above 1 - FLOOR).
# On the demo SAE that flags no held-out scene of 1,000 and each of the photographs tried.
FACTOR = 1.5
FLOOR = 0.5


def explained_share(tokens: torch.Tensor, reconstruction: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """[B]: the share of each picture's token variance around ``centre`` [d] that
    ``reconstruction`` keeps, for ``tokens`` and their SAE ``reconstruction`` [B, T, d]."""
    tokens = tokens.float()
    err = (tokens - reconstruction.float()).pow(2).sum((1, 2))
    spread = (tokens - centre.to(tokens)).pow(2).sum((1, 2)).clamp_min(1e-12)
    return (1 - err / spread).cpu()


def origin(sae: SparseAutoencoder) -> torch.Tensor:
    """[d]: the SAE's own centre (``b_dec`` in the input's scale), for pictures with no index to compare with."""
    return (sae.b_dec / sae.input_scale).detach().float()


@dataclass(frozen=True)
class Coverage:
    explained: float  # this picture's explained share
    indexed: torch.Tensor | None = None  # [N] the indexed pictures' explained shares

    @property
    def typical(self) -> tuple[float, float] | None:
        """The indexed pictures' 5th and 95th percentiles."""
        if self.indexed is None or len(self.indexed) == 0:
            return None
        q = torch.quantile(self.indexed.float(), torch.tensor([0.05, 0.95]))
        return float(q[0]), float(q[1])

    @property
    def far_outside(self) -> bool:
        """True when this picture is read far worse than the indexed pictures are."""
        if self.indexed is None or len(self.indexed) == 0:
            return self.explained < FLOOR
        worst = 1 - float(torch.quantile(self.indexed.float(), 0.01))
        return 1 - self.explained > FACTOR * worst

    def line(self) -> str:
        """E.g. ``the SAE explains 58% of this picture (indexed pictures: 96-99%)``."""
        typical = self.typical
        here = f"the SAE explains {_percent(self.explained)} of this picture"
        if typical is None:
            return here + " (no indexed pictures to compare with)"
        return here + f" (indexed pictures: {_percent(typical[0], sign=False)}-{_percent(typical[1])})"

    def warning(self) -> str | None:
        """One sentence for a picture far outside what the SAE knows, else None."""
        if not self.far_outside:
            return None
        return (
            "This picture is far from the pictures this SAE was trained on, so its feature labels "
            "may not mean here what they say."
        )


def _percent(share: float, sign: bool = True) -> str:
    value = round(100 * share)
    value = max(-999, value)  # a reconstruction worse than the centre itself reads as a negative share
    return f"{value}%" if sign else f"{value}"
