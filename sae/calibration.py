"""Calibrated slider units: one step of any slider moves the image embedding the decoder paints
from by a comparable amount, measured without any judge.

A latent's slider adds ``value`` times its decoder row on its tokens. Swept over values, the
edited image embedding leaves the unedited one and then stops moving once the added row drowns
the tokens out (the encoder's layer norms saturate). The *response* is that distance (on the unit
sphere, averaged over a few pictures) against the value. A calibrated unit is the value at which
the response reaches ``UNIT_SHARE`` of its far end, and the slider's *saturation* (where its range
ends) the value at which it reaches ``SATURATION_SHARE``, in calibrated units. Upward it is measured
on neutral pictures (the concept absent), downward on the pictures the latent fires on most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sae.backbone import Backbone
from sae.model import SparseAutoencoder
from sae.steer import Edit, steer_residual

# The sweep, in multiples of the value at which the added row is as long as a typical token;
# FAR stands for the saturated end.
GRID = tuple(2.0**k for k in range(-5, 5))
FAR = 64.0
UNIT_SHARE = 0.5
SATURATION_SHARE = 0.9
MIN_RESPONSE = 1e-3  # a far end below this moves nothing measurable: the latent keeps its old unit


@dataclass(frozen=True)
class Response:
    values: torch.Tensor  # [K] raw amounts added (one sign), increasing in size
    change: torch.Tensor  # [K] mean distance of the normalised edited embedding from the unedited one
    far: float  # the distance at FAR x the typical-token value: where the curve levels off

    def value_at(self, distance: float) -> float:
        """The amount (with its sign) at which the response first reaches ``distance``,
        interpolated in log value; inf if it never does."""
        mags, change = self.values.abs(), self.change
        prev_v, prev_c = 0.0, 0.0
        for v, c in zip(mags.tolist(), change.tolist(), strict=True):
            if c >= distance:
                t = (distance - prev_c) / max(c - prev_c, 1e-12)
                v = (prev_v + t * (v - prev_v)) if prev_v == 0 else prev_v * (v / prev_v) ** t
                return float(v) * (1 if self.values[0] >= 0 else -1)
            prev_v, prev_c = v, c
        return float("inf")


@dataclass(frozen=True)
class Side:
    unit: float  # the raw amount of one calibrated unit (positive), 0 when uncalibrated
    saturation: float  # where the slider stops changing the picture, in calibrated units


@dataclass(frozen=True)
class Calibration:
    up: Side
    down: Side
    reason: str = ""  # why the latent keeps its old unit (empty: calibrated)

    @property
    def calibrated(self) -> bool:
        return not self.reason


def response(
    backbone: Backbone, sae: SparseAutoencoder, latent: int, tokens: str, pixels: torch.Tensor, sign: float = 1.0
) -> Response:
    """The embedding's response to ``latent``'s slider on ``pixels`` [N, 3, H, W] (preprocessed),
    adding ``sign`` x GRID (and FAR) x the typical-token value on ``tokens``."""
    with torch.inference_mode():
        resid, sae_in = backbone.split(pixels.to(backbone.device))
        positions = backbone.token_positions(sae.metadata.token_set)
        codes = [sae.encode(x[positions]) for x in sae_in]
        row = (sae.W_dec[latent] / sae.input_scale).norm().item()
        token = resid[:, positions].norm(dim=-1).median().item()
        scale = token / max(row, 1e-12)
        multiples = (*GRID, FAR)
        values = torch.tensor([sign * m * scale for m in multiples])
        base = F.normalize(backbone.suffix(resid).float(), dim=-1)
        edited = torch.stack(
            [
                torch.stack(
                    [
                        steer_residual(r, sae, c, [Edit(latent, "add", float(v), tokens=tokens)], positions)
                        for r, c in zip(resid, codes, strict=True)
                    ]
                )
                for v in values
            ]
        )  # [K, N, T, d]
        e = F.normalize(backbone.suffix(edited.flatten(0, 1)).float(), dim=-1).view(len(values), len(pixels), -1)
        change = (e - base[None]).norm(dim=-1).mean(1)
    return Response(values[:-1], change[:-1], float(change[-1]))


def side(r: Response) -> Side | None:
    """One side's unit and saturation from its response (None: it moves nothing measurable)."""
    if r.far < MIN_RESPONSE:
        return None
    unit = abs(r.value_at(UNIT_SHARE * r.far))
    saturation = abs(r.value_at(SATURATION_SHARE * r.far))
    if not (0 < unit < float("inf")):
        return None
    return Side(unit, saturation / unit if saturation < float("inf") else abs(float(r.values[-1])) / unit)


def calibrate(
    backbone: Backbone,
    sae: SparseAutoencoder,
    latent: int,
    tokens: str,
    neutral: torch.Tensor,
    firing: torch.Tensor | None = None,
) -> Calibration:
    """``latent``'s calibration: upward on the ``neutral`` pictures, downward on ``firing`` (the
    pictures it fires on most; the neutral ones when None)."""
    up = side(response(backbone, sae, latent, tokens, neutral, 1.0))
    down = side(response(backbone, sae, latent, tokens, neutral if firing is None else firing, -1.0))
    if up is None or down is None:
        return Calibration(
            Side(0.0, 0.0),
            Side(0.0, 0.0),
            f"its largest edit moves the image embedding by less than {MIN_RESPONSE:g}, so it keeps its old unit",
        )
    return Calibration(up, down)


def calibrate_many(
    backbone: Backbone,
    sae: SparseAutoencoder,
    latents: Sequence[int],
    tokens_of,
    neutral: torch.Tensor,
    firing_of=None,
) -> dict[int, Calibration]:
    return {
        i: calibrate(backbone, sae, i, tokens_of(i), neutral, None if firing_of is None else firing_of(i))
        for i in latents
    }
