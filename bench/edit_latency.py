"""Slider latency on the demo models: a slider change on a cached image to a finished image,
against the uncached full pipeline (load, prefix, SAE encode, suffix, decode), in one run.

    python bench/edit_latency.py [--reps 20] [--steps 8] [--strength 0.9] [--region edited]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from PIL import Image  # noqa: E402

from sae.assets import SAMPLES  # noqa: E402
from sae.decoders import DecodeSettings, default_steps, default_strength  # noqa: E402
from sae.decoders.region import REGIONS  # noqa: E402
from sae.demo.session import default_session  # noqa: E402
from sae.steer import Edit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument(
        "--steps", type=int, default=default_steps("demo"), help="denoising steps (default: the demo decoder's)"
    )
    p.add_argument(
        "--strength",
        type=float,
        default=default_strength("demo"),
        help="img2img strength (default: the demo decoder's)",
    )
    p.add_argument(
        "--region", choices=REGIONS, default=DecodeSettings.region, help="edit region (default: %(default)s)"
    )
    a = p.parse_args()
    session = default_session()
    image = Image.open(SAMPLES / "cat-on-grass.png").convert("RGB")
    settings = DecodeSettings(steps=a.steps, strength=a.strength, seed=0, region=a.region)
    session.set_image(image)
    latent = session.fires(1)[0].latent
    cached, full = [], []
    for i in range(a.reps):
        t = time.perf_counter()
        session.render([Edit(latent, "add", 0.1 * (i + 1))], settings)
        cached.append(time.perf_counter() - t)
        t = time.perf_counter()
        session.set_image(image)
        session.render([Edit(latent, "add", 0.1 * (i + 1))], settings)
        full.append(time.perf_counter() - t)
    c, f = statistics.median(cached), statistics.median(full)
    print(
        f"slider change on a cached image: median {c * 1000:.0f} ms ({a.steps} steps at strength {a.strength:g}, "
        f"region {a.region})"
    )
    print(f"uncached full pipeline:          median {f * 1000:.0f} ms")
    print(f"cached_ms={c * 1000:.0f} ratio_vs_uncached={c / f:.2f}")


if __name__ == "__main__":
    main()
