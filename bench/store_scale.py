"""Activation store at scale: peak memory and reader speed against the store's size.

Writes synthetic fp16 stores shaped like the demo world's (65 tokens of width 128 per image,
64 MB shards) for 1k, 10k and 100k images, then, in a fresh process per store, streams
shuffled training batches from it and reports the reader's peak RSS and tokens/s. Memory
should stay flat: the reader memory-maps shards and shuffles within a buffer of a few shards.

    python bench/store_scale.py [--sizes 1000,10000,100000] [--batches 400] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from sae import atomic  # noqa: E402
from sae.activations import MANIFEST_NAME, Manifest, ShardInfo  # noqa: E402

TOKENS, D, SHARD_MB = 65, 128, 64


def write_store(folder: Path, images: int) -> Path:
    if (folder / MANIFEST_NAME).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = max(1, SHARD_MB * 2**20 // (TOKENS * D * 2))
    rng = np.random.default_rng(0)
    infos = []
    for i, start in enumerate(range(0, images, per_shard)):
        n = min(per_shard, images - start)
        arr = rng.standard_normal((n * TOKENS, D), dtype=np.float32).astype(np.float16)
        np.save(folder / f"shard-{i:05d}.npy", arr)
        infos.append(ShardInfo(f"shard-{i:05d}.npy", n * TOKENS, start, start + n))
    m = Manifest(
        model="synthetic",
        fingerprint="0",
        layer=3,
        token_set="all",
        d=D,
        dtype="fp16",
        tokens_per_image=TOKENS,
        shard_images=per_shard,
        sources=[f"{i}.png" for i in range(images)],
        shards=infos,
        complete=True,
    )
    atomic.write_json(folder / MANIFEST_NAME, m.to_json())
    return folder


def read(folder: str, batches: int, batch_size: int) -> None:
    """Child process: stream ``batches`` batches, print JSON with tokens/s and peak RSS."""
    from sae.activations import ActivationStore

    store = ActivationStore(folder)
    t = time.perf_counter()  # shard loads count: a pass reads every shard once
    stream = store.batches(batch_size, seed=0)
    total = 0.0
    for _ in range(batches or store.rows // batch_size):
        total += float(next(stream)[0, 0])
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = batches or store.rows // batch_size
    print(json.dumps({"tokens_per_s": n * batch_size / seconds, "peak_rss_mb": peak_mb, "rows": store.rows}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000", help="store sizes in images")
    p.add_argument("--batches", type=int, default=0, help="batches to read per store (default: one pass over it)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--keep", default=None, help="folder for the stores (kept); default: a temporary one")
    p.add_argument("--read", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.read:
        read(a.read, a.batches, a.batch_size)
        return
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="store-scale-"))
    rows = []
    try:
        for images in (int(s) for s in a.sizes.split(",")):
            folder = write_store(root / f"store-{images}", images)
            disk_mb = sum(f.stat().st_size for f in folder.glob("*.npy")) / 2**20
            r = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--read",
                    str(folder),
                    "--batches",
                    str(a.batches),
                    "--batch-size",
                    str(a.batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append((images, res["rows"], disk_mb, res["peak_rss_mb"], res["tokens_per_s"]))
            print(
                f"{images:>8,} images  {res['rows']:>11,} tokens  {disk_mb:>8,.0f} MB on disk  "
                f"peak RSS {res['peak_rss_mb']:>6,.0f} MB  {res['tokens_per_s']:>12,.0f} tokens/s",
                flush=True,
            )
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    first, last = rows[0], rows[-1]
    print(
        f"store_growth={last[1] / first[1]:.0f}x peak_rss_growth={last[3] / first[3]:.2f}x "
        f"reader_tokens_per_s={last[4]:,.0f}"
    )


if __name__ == "__main__":
    main()
