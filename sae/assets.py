"""Where the shipped models and samples live: the product's ``assets/`` folder beside the package."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO = ASSETS / "demo"  # the demo models: clip/, sae/, decoder/, judge/, movq/ and their card
