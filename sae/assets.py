"""Where the shipped models and samples live: the product's ``assets/`` folder, installed as the
data package ``sae_studio_assets`` and found through ``importlib.resources``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ASSETS = Path(str(resources.files("sae_studio_assets")))
DEMO = ASSETS / "demo"  # the demo models: clip/, sae/, decoder/, judge/, movq/ and their card
SAMPLES = ASSETS / "samples"  # sample pictures the editor opens first
