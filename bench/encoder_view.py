"""What the encoder should read of a non-square picture: a centre crop, the whole picture padded
to a square, or the whole picture squashed (open_clip's three ``resize_mode``s).

Wide pictures are made of two held-out demo scenes side by side (128x64, every object whole);
square scenes are the control, where the three modes agree. For each mode: the SAE's explained
share (``sae.coverage``), the share of pictures that coverage flags as far outside the indexed
ones, and, per object kind, how well the kind's best detector latent (chosen
on the square scenes) tells pictures with the kind from pictures without it (AUROC of the
image-level activation, averaged over kinds), all on the shipped demo models.

    python bench/encoder_view.py [--n 400]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from open_clip.transform import image_transform  # noqa: E402

from sae.assets import DEMO  # noqa: E402
from sae.coverage import Coverage, explained_share  # noqa: E402
from sae.demo import world  # noqa: E402
from sae.demo.data import world_data  # noqa: E402
from sae.demo.session import default_session  # noqa: E402
from sae.features import FeatureIndex  # noqa: E402

MODES = ("shortest", "longest", "squash")


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.inference_mode()
def read(session, pictures: list[Image.Image], mode: str, centre: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """[N] explained shares and [N, d_sae] image-level activations of ``pictures`` under ``mode``."""
    bb, sae = session.backbone, session.sae
    cfg = bb.model.visual.preprocess_cfg
    transform = image_transform(bb.image_size, False, cfg["mean"], cfg["std"], resize_mode=mode)
    shares, acts = [], []
    for i in range(0, len(pictures), 64):
        pixels = torch.stack([transform(p) for p in pictures[i : i + 64]])
        tokens = bb.prefix(pixels)[:, session.positions].float()
        code = sae.encode(tokens)
        shares.append(explained_share(tokens, sae.decode(code), centre).numpy())
        acts.append(code.amax(1).numpy())
    return np.concatenate(shares), np.concatenate(acts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="wide pictures (each of two scenes)")
    args = parser.parse_args()
    session = default_session(decoder=False)
    index = FeatureIndex.load(DEMO / "sae")
    data = world_data(2 * args.n, seed=77)
    square = [Image.fromarray(im) for im in data.images]
    present = data.present.astype(bool)  # [2n, kinds]
    _, square_acts = read(session, square, "shortest", index.centre)
    detectors = [
        int(np.argmax([auroc(square_acts[:, f], present[:, k]) for f in range(square_acts.shape[1])]))
        for k in range(len(world.KINDS))
    ]
    wide = []
    for a, b in zip(square[0::2], square[1::2], strict=True):
        pic = Image.new("RGB", (128, 64))
        pic.paste(a, (0, 0))
        pic.paste(b, (64, 0))
        wide.append(pic)
    wide_present = present[0::2] | present[1::2]
    rows = [("square scenes (control)", square, present, "shortest")]
    rows += [(f"2:1 pictures, {mode}", wide, wide_present, mode) for mode in MODES]
    print(f"{'pictures, resize mode':<32} {'explained (median)':>19} {'flagged':>8} {'detector AUROC':>15}")
    for name, pictures, truth, mode in rows:
        shares, acts = read(session, pictures, mode, index.centre)
        flagged = np.mean([Coverage(float(x), index.explained).far_outside for x in shares])
        score = np.nanmean([auroc(acts[:, f], truth[:, k]) for k, f in enumerate(detectors)])
        print(f"{name:<32} {np.median(shares):>19.3f} {flagged:>8.3f} {score:>15.3f}")


if __name__ == "__main__":
    main()
