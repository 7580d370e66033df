from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n N: the workers share the cores
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

from helpers import build_quick_demo, save_tiny_clip, write_images  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> None:
    """What the code keeps in the user's cache goes to a folder of this run, never the real one."""
    os.environ["SAE_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("user-cache"))


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


@pytest.fixture
def image_dir(tmp_path) -> Path:
    return write_images(tmp_path / "images", 24)
