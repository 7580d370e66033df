"""Extraction speed: images/s of ``prefix`` at the middle layer against a full ``encode_image``.

Stopping at layer L of N blocks should cost about L/N of a full forward, so the ratio of
images/s should approach N/L (target: at least 0.9 * N/L). Both run in this process on the
same batches, alternating, so the ratio holds on a busy machine.

    python bench/extract_throughput.py [--width 384] [--image-size 224] [--batch 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import open_clip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import tiny_clip_config  # noqa: E402

from sae.backbone import Backbone  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-16", help="open_clip config whose structure is used (random weights)")
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    cfg = tiny_clip_config(a.model, width=a.width, image_size=a.image_size)
    model = open_clip.CLIP(**cfg).eval()
    bb = Backbone(model, a.model, layer=cfg["vision_cfg"]["layers"] // 2)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    full, prefix = [], []
    with torch.inference_mode():
        bb.encode_image(x), bb.prefix(x)  # warm-up
        for _ in range(a.reps):
            t = time.perf_counter()
            bb.encode_image(x)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            bb.prefix(x)
            prefix.append(time.perf_counter() - t)
    full_ips, prefix_ips = a.batch / statistics.median(full), a.batch / statistics.median(prefix)
    ideal = bb.n_layers / bb.layer
    print(f"{a.model} structure, width {a.width}, {a.image_size}px, layer {bb.layer} of {bb.n_layers}")
    print(f"encode_image: {full_ips:8.1f} images/s")
    print(f"prefix:       {prefix_ips:8.1f} images/s")
    print(f"ratio={prefix_ips / full_ips:.2f} ideal={ideal:.2f} fraction_of_ideal={prefix_ips / full_ips / ideal:.2f}")


if __name__ == "__main__":
    main()
