"""World datasets made once and cached on disk (``.npz``: images, labels, captions)."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from sae import atomic
from sae.cache import cache_root
from sae.demo import world

HELD_OUT_SEED = 2  # the world seed of scenes no demo model trained on
CHUNK = 2000


def cache_dir() -> Path:
    return cache_root() / "demo-data"


def _chunk(args: tuple[int, int, bool, bool]) -> tuple:
    n, seed, twins, removals = args
    images, lab, captions = world.dataset(n, seed, twins=twins, removals=removals)
    return images, lab.present, lab.colour, lab.background, captions


class WorldData:
    """Images uint8 [N, 64, 64, 3] with presence [N, 10], colour [N, 10], background [N], captions."""

    def __init__(self, images, present, colour, background, captions):
        self.images, self.present, self.colour, self.background = images, present, colour, background
        self.captions = list(captions)

    def __len__(self) -> int:
        return len(self.images)


def world_data(n: int, seed: int, workers: int = 2, twins: bool = False, removals: bool = False) -> WorldData:
    """``n`` scenes for ``seed``, generated in chunks (in parallel) and cached; ``twins`` makes
    minimal pairs (scenes 2i and 2i+1 differ in one object's kind), ``removals`` pairs whose
    second scene lacks one object of the first."""
    kind = "-twins" if twins else "-removals" if removals else ""
    path = cache_dir() / f"world-v{world.VERSION}-{n}-{seed}{kind}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return WorldData(z["images"], z["present"], z["colour"], z["background"], json.loads(str(z["captions"])))
    jobs = [(min(CHUNK, n - i), seed * 100_003 + i // CHUNK, twins, removals) for i in range(0, n, CHUNK)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_chunk, jobs))
    else:
        parts = [_chunk(j) for j in jobs]
    data = WorldData(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
        [c for p in parts for c in p[4]],
    )
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            images=data.images,
            present=data.present,
            colour=data.colour,
            background=data.background,
            captions=np.array(json.dumps(data.captions)),
        )
    return data
