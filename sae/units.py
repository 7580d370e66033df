"""What one step of an ``add`` slider means. Torch-free: presets and the editor's rows read it.

A slider's position is in units; the amount added to the latent's activation is the position
times ``up`` above zero and times ``down`` below it. Calibrated units (``sae.calibration``) make
one unit the same measured change of the image embedding for every latent, and end the range
where the picture stops changing; uncalibrated ones are today's: the latent's typical maximum
activation, three of them each way. Presets store the amounts, so a replay never depends on units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TYPICAL_RANGE = 3.0  # units each way of an uncalibrated slider
MAX_RANGE = 8.0  # a calibrated range never runs further than this, however late its saturation


@dataclass(frozen=True)
class Scale:
    up: float  # activation added per unit above zero
    down: float  # per unit below zero
    top: float = TYPICAL_RANGE  # the range's end above zero, in units
    bottom: float = TYPICAL_RANGE  # below zero, in units
    why: str = ""  # why the units are not calibrated (empty: calibrated)

    @property
    def calibrated(self) -> bool:
        return not self.why

    @classmethod
    def typical(cls, unit: float, why: str) -> Scale:
        """Uncalibrated: ``unit`` (the typical max activation) per unit both ways."""
        unit = unit if math.isfinite(unit) and unit > 0 else 1.0
        return cls(unit, unit, TYPICAL_RANGE, TYPICAL_RANGE, why)

    def amount(self, position: float) -> float:
        """The activation added at slider ``position`` (units)."""
        return position * (self.up if position >= 0 else self.down)

    def position(self, amount: float) -> float:
        """The slider position (units) that adds ``amount``."""
        return amount / (self.up if amount >= 0 else self.down)

    def to_json(self) -> dict:
        return {"up": self.up, "down": self.down, "top": self.top, "bottom": self.bottom, "calibrated": self.calibrated}

    @classmethod
    def from_json(cls, raw) -> Scale | None:
        """A preset's scale, or None when it is missing or not a sane one."""
        if not isinstance(raw, dict):
            return None
        try:
            up, down, top, bottom = (float(raw[k]) for k in ("up", "down", "top", "bottom"))
        except (KeyError, TypeError, ValueError):
            return None
        if not all(math.isfinite(x) and 0 < x < 1e6 for x in (up, down, top, bottom)):
            return None
        return cls(up, down, top, bottom, "" if raw.get("calibrated") is True else "made in uncalibrated units")
