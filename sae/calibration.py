"""Calibrated slider units: one step up any slider moves the image embedding the decoder paints
from as far, for its feature, as pictures that show the feature lie from ordinary ones, measured
without any judge; one step down takes away what it fires.

A latent's slider adds ``value`` times its decoder row on its tokens. Swept over values, the
edited image embedding leaves the unedited one and then stops moving once the added row drowns
the tokens out (the encoder's layer norms saturate). The *response* is that distance (between
normalised embeddings, averaged over a few pictures) against the value. The latent's
*separation* is the distance between the mean embedding of the indexed pictures it fires on most
and that of ordinary indexed pictures: how far its feature moves a real picture. A calibrated
unit is the value at which the response reaches ``UNIT_SHARE`` of the separation (a fixed
``UNIT_DISTANCE`` without an index to measure it on); the slider's *saturation*, where its range
ends, is where the response reaches ``SATURATION_SHARE`` of its far end. A latent whose far end
lies short of one unit gets a range that ends short of one unit. Upward the response is measured
on neutral pictures (the concept absent), downward on the pictures the latent fires on most.

Below zero a slider takes away what fires, so one unit there is the latent's typical maximum
activation (where the index knows it) and only the range's end comes from the response: on the
demo world the embedding distance spread the values that remove a concept more than that does
(bench/slider_calibration.py, which measures what all this buys against the demo world's judge).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sae import atomic
from sae.backbone import Backbone
from sae.features import INDEX_DIR
from sae.model import SparseAutoencoder
from sae.steer import Edit, steer_residual
from sae.units import MAX_RANGE, Scale

# The sweep, in multiples of the value at which the added row is as long as a typical token;
# FAR stands for the saturated end.
GRID = tuple(2.0**k for k in range(-4, 4))
FAR = 64.0
# One unit: the normalised embedding moves this share of the latent's separation. On the demo world
# it evens out the values at which the judge sees an added concept as well as the best fixed
# distance (bench/slider_calibration.py), and it scales with how far a feature lies from ordinary
# pictures, which a fixed distance cannot; 1.0 would reach past some latents' far ends.
UNIT_SHARE = 0.8
UNIT_DISTANCE = 0.5  # without a separation: the normalised embedding moves this far (29 degrees)
ORDINARY_PICTURES = 64  # indexed pictures, spread over the index, whose mean is "ordinary"
SATURATION_SHARE = 0.9
NEUTRAL_PICTURES = 4  # neutral pictures an upward response is averaged over
FIRING_PICTURES = 4  # indexed pictures a latent fires on most, for its downward response
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

    def scale(self, typical_unit: float) -> Scale:
        """The slider's units: calibrated, or (with the reason) ``typical_unit`` per unit."""
        if self.reason:
            return Scale.typical(typical_unit, self.reason)
        return Scale(
            self.up.unit, self.down.unit, min(self.up.saturation, MAX_RANGE), min(self.down.saturation, MAX_RANGE)
        )


@dataclass(frozen=True)
class Pictures:
    """Pictures read up to the SAE's layer once, for the responses of many latents."""

    resid: torch.Tensor  # [N, T, d] the residual edits are added to
    codes: list  # each picture's SAE code
    base: torch.Tensor  # [N, e] the unedited normalised embeddings


def read(backbone: Backbone, sae: SparseAutoencoder, pixels: torch.Tensor) -> Pictures:
    """``pixels`` [N, 3, H, W] (preprocessed) read up to the layer, coded and embedded."""
    with torch.inference_mode():
        resid, sae_in = backbone.split(pixels.to(backbone.device))
        positions = backbone.token_positions(sae.metadata.token_set)
        codes = [sae.encode(x[positions]) for x in sae_in]
        return Pictures(resid, codes, F.normalize(backbone.suffix(resid).float(), dim=-1))


def response(
    backbone: Backbone,
    sae: SparseAutoencoder,
    latent: int,
    tokens: str,
    pictures: Pictures,
    sign: float = 1.0,
    between: Callable[[], None] = lambda: None,
) -> Response:
    """The embedding's response to ``latent``'s slider on ``pictures``, adding ``sign`` x GRID (and
    FAR) x the value at which its decoder row is as long as a typical token, on ``tokens``.
    ``between`` is called before each value's encoder pass (the editor waits there while a
    render the user asked for runs)."""
    resid, positions = pictures.resid, backbone.token_positions(sae.metadata.token_set)
    with torch.inference_mode():
        row = (sae.W_dec[latent] / sae.input_scale).norm().item()
        token = resid[:, positions].norm(dim=-1).median().item()
        values = torch.tensor([sign * m * token / max(row, 1e-12) for m in (*GRID, FAR)])
        # an add edit is linear in its value: the editor's own path gives the change at value 1
        edit = [Edit(latent, "add", 1.0, tokens=tokens)]
        step = torch.stack(
            [steer_residual(r, sae, c, edit, positions) - r for r, c in zip(resid, pictures.codes, strict=True)]
        )  # [N, T, d]
        change = []
        for v in values.tolist():
            between()
            e = F.normalize(backbone.suffix(resid + v * step).float(), dim=-1)
            change.append((e - pictures.base).norm(dim=-1).mean())
        change = torch.stack(change)
    return Response(values[:-1], change[:-1], float(change[-1]))


@dataclass(frozen=True)
class Responses:
    """What a latent's calibration is made from."""

    up: Response  # on neutral pictures
    down: Response  # on the pictures it fires on most
    separation: float | None  # their mean embedding's distance from ordinary pictures' (None: no index)

    @property
    def unit_distance(self) -> float:
        """How far one unit up moves the normalised embedding."""
        return UNIT_DISTANCE if self.separation is None else UNIT_SHARE * self.separation


def separation(top: Pictures, ordinary: torch.Tensor | None) -> float | None:
    """The distance between the mean normalised embedding of ``top`` and ``ordinary`` [e] (the
    mean of ordinary pictures'); None without ordinary pictures."""
    if ordinary is None or len(top.base) == 0:
        return None
    return float((top.base.mean(0) - ordinary).norm())


def side(r: Response, unit_distance: float = UNIT_DISTANCE) -> Side | None:
    """One side's unit and saturation from its response (None: it moves nothing measurable)."""
    if r.far < MIN_RESPONSE:
        return None
    end = SATURATION_SHARE * r.far
    saturation = abs(r.value_at(end))
    if saturation == float("inf"):  # still rising at the sweep's end: the range ends there
        saturation, end = abs(float(r.values[-1])), float(r.change[-1])
    if not saturation > 0:
        return None
    # a short slider (its far end below one unit) is scaled so that its end reads as its distance
    unit = abs(r.value_at(unit_distance)) if unit_distance < end else saturation * unit_distance / max(end, 1e-12)
    return Side(unit, saturation / unit)


def calibrated(measured: Responses, typical: float = 0.0) -> Calibration:
    """A latent's calibration from its responses; below zero one unit is ``typical`` (its typical
    max activation) when that is known (> 0)."""
    sides = side(measured.up, measured.unit_distance), side(measured.down)
    if None in sides:
        return Calibration(
            Side(0.0, 0.0),
            Side(0.0, 0.0),
            f"its largest edit moves the image embedding by less than {MIN_RESPONSE:g}, so it keeps its old unit",
        )
    upward, downward = sides
    if math.isfinite(typical) and typical > 0:
        downward = Side(typical, downward.saturation * downward.unit / typical)
    return Calibration(upward, downward)


FILE = "calibration.json"  # in the SAE folder's index: made from it, and gone with it
# What a stored calibration was measured with: entries made otherwise are measured again.
METHOD = {
    "grid": list(GRID),
    "far": FAR,
    "unit_distance": UNIT_DISTANCE,
    "unit_share_of_separation": UNIT_SHARE,
    "ordinary_pictures": ORDINARY_PICTURES,
    "saturation_share": SATURATION_SHARE,
    "down_unit": "typical max activation",
}


class CalibrationStore:
    """The calibrations measured so far for one SAE folder, kept in ``index/calibration.json``:
    each latent is measured once, when a slider first needs it (or by ``sae-studio calibrate``)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / INDEX_DIR / FILE
        self.ordinary: torch.Tensor | None = None  # the mean embedding of ordinary pictures, once read
        self.entries: dict[int, Calibration] = self._read()

    def _read(self) -> dict[int, Calibration]:
        try:
            raw = atomic.parse_json(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: measured again
        if not isinstance(raw, dict) or raw.get("method") != METHOD or not isinstance(raw.get("latents"), dict):
            return {}
        ordinary = raw.get("ordinary")
        if isinstance(ordinary, list) and ordinary and all(isinstance(x, (int, float)) for x in ordinary):
            self.ordinary = torch.tensor(ordinary, dtype=torch.float32)
            if not torch.isfinite(self.ordinary).all():
                self.ordinary = None
        out = {}
        for key, entry in raw["latents"].items():
            c = _entry(entry)
            if c is not None and key.isdigit():
                out[int(key)] = c
        return out

    def get(self, latent: int) -> Calibration | None:
        return self.entries.get(latent)

    def save(self) -> None:
        """Write every calibration in ``entries`` (atomically)."""
        latents = {}
        for i, c in sorted(self.entries.items()):
            latents[str(i)] = (
                {"reason": c.reason}
                if c.reason
                else {"up": [c.up.unit, c.up.saturation], "down": [c.down.unit, c.down.saturation]}
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        out = {"format": "sae-studio-calibration", "method": METHOD, "latents": latents}
        if self.ordinary is not None:
            out["ordinary"] = self.ordinary.tolist()
        atomic.write_json(self.path, out)


def _entry(entry) -> Calibration | None:
    """A stored entry, or None when it is not one this version wrote (then it is measured again)."""
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("reason"), str) and entry["reason"]:
        return Calibration(Side(0.0, 0.0), Side(0.0, 0.0), entry["reason"][:300])
    try:
        sides = [Side(float(entry[k][0]), float(entry[k][1])) for k in ("up", "down")]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if not all(
        math.isfinite(x.unit) and math.isfinite(x.saturation) and x.unit > 0 and x.saturation > 0 for x in sides
    ):
        return None
    return Calibration(*sides)
