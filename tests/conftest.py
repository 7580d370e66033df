from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

from helpers import build_quick_demo, save_tiny_clip  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random ViT-B-16-shaped CLIP (12 blocks, width 32, 32x32 images) in local-dir layout."""
    return save_tiny_clip("ViT-B-16", tmp_path_factory.mktemp("clip") / "tiny-vit-b-16", image_size=32)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """The --quick demo CLIP and SAE with a tiny random decoder of the demo's shape, built once a
    run; modules take their own copy with ``helpers.copy_quick_demo``."""
    root, _images = build_quick_demo(tmp_path_factory.mktemp("quick-demo"), 0)
    return root


def write_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """``n`` random-blob PNGs in ``folder`` (two sub-folders, to exercise recursion)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(sub / f"img{i:04d}.png")
    return folder


@pytest.fixture
def image_dir(tmp_path) -> Path:
    return write_images(tmp_path / "images", 24)
