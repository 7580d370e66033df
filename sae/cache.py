"""The user's cache folder for what sae-studio can always make again: the demo world's datasets,
demo runs and reports, and per-encoder results that cost seconds to recompute at every load.
``SAE_STUDIO_CACHE`` moves it (the tests point it at a temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def cache_root() -> Path:
    return Path(os.environ.get("SAE_STUDIO_CACHE") or user_cache_dir("sae-studio"))
