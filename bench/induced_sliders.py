"""Induced sliders against the best single latent, on the demo world, refereed by the judge.

Two concepts:

- "cat": induced from 10 scenes with a cat and 10 without (`sae.induce`); compared with the single
  latent whose image-level activation best separates cat scenes (AUROC on 1,000 held-out scenes).
  Success: the judge sees a cat in an edited scene that had none.
- "red object": induced from 10 scenes with something red and 10 with nothing red; compared with
  the single latent that best separates "something red" scenes. Success: the judge reads a red
  object in an edited scene that had none.

Each is swept over strengths; preservation is the share of the other labels (background, other
kinds' presence) the judge reads the same as on the unedited decode. The two methods are swept on
one scale, the size of the residual change they make (the norm of the decoder vector they add
per token), so that at each grid point both push the residual equally far. Printed: each
method's success at preservation 0.9 ("equal preservation"), interpolated along its
success-vs-preservation curve, side by side.

    python bench/induced_sliders.py [--n 100] [--steps 8] [--strength 0.9] [--region edited]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from decoded_edits import PRESERVATION, at_preservation, decode, demo_session, embeddings, parse_args, preservation  # noqa: E402,I001
from PIL import Image  # noqa: E402

from sae.decoders import DecodeSettings, default_steps, default_strength  # noqa: E402
from sae.demo import world  # noqa: E402
from sae.demo.build import DEMO  # noqa: E402
from sae.demo.judge import Judge, JudgeOutput  # noqa: E402
from sae.demo.metrics import auroc_per_column  # noqa: E402
from sae.errors import UserError  # noqa: E402
from sae.features import FeatureIndex  # noqa: E402
from sae.induce import induce  # noqa: E402
from sae.steer import Edit  # noqa: E402

RED = world.COLOURS.index("red")
# Edit sizes swept, in units of the single latent's typical maximum activation: far enough that
# both methods fall below PRESERVATION. The induced slider is swept at the values whose residual
# change has the same norm (`edit_size`), so the two curves are sampled at equal edit sizes.
VALUES = (0.5, 1, 2, 4, 8, 16)


def scenes(n: int, keep: Callable[[world.Scene], bool], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        sc = world.sample_scene(rng)
        if keep(sc):
            out.append(world.render(sc, seed=int(rng.integers(2**31))))
    return out


def has_cat(sc: world.Scene) -> bool:
    return "cat" in sc.kinds()


def has_red(sc: world.Scene) -> bool:
    return any(t.colour == "red" for t in sc.things)


def judged_cat(j: JudgeOutput, i: int) -> bool:
    return bool(j.present[i, world.KINDS.index("cat")] > 0.5)


def judged_red(j: JudgeOutput, i: int) -> bool:
    return bool(((j.present[i] > 0.5) & (j.colour[i] == RED)).any())


def codes(session, images: list[np.ndarray]) -> torch.Tensor:
    return session.image_codes([Image.fromarray(im) for im in images])


def sweep(
    session, judge, images, edits_at: Callable[[float], list[Edit]], values, seen
) -> list[tuple[float, float, float]]:
    """(value, success, preservation) per value; success: ``seen`` on the edit, not on the plain decode."""
    settings = DecodeSettings(steps=ARGS.steps, strength=ARGS.strength, seed=0, region=ARGS.region)
    plain_e, edited_e = embeddings(session, images, [lambda ss, v=v: ss.embedding(edits_at(v)) for v in values])
    j0 = judge.predict(decode(session, plain_e, images, settings, plain_e))
    rows = []
    for v, e in zip(values, edited_e, strict=True):
        j1 = judge.predict(decode(session, e, images, settings, plain_e))
        ok = [seen(j1, i) for i in range(len(images)) if not seen(j0, i)]
        rows.append((v, float(np.mean(ok)) if ok else float("nan"), preservation(j0, j1)))
    return rows


def edit_size(sae, weights) -> float:
    """The norm of the residual change per token that one slider unit makes: ||sum_i w_i W_dec[i]||."""
    w_dec = sae.W_dec.detach().float()
    return float(sum(w * w_dec[i] for i, w in weights).norm())


def compare(session, judge, name, keep, seen, held, held_truth, unit) -> None:
    examples = scenes(10, keep, 31)
    others = scenes(10, lambda sc: not keep(sc), 32)
    latent = int(np.nanargmax(auroc_per_column(held.numpy(), held_truth)))
    auc_single = float(auroc_per_column(held[:, [latent]].numpy(), held_truth)[0])
    targets = scenes(ARGS.n, lambda sc: not keep(sc), 33)
    try:
        slider = induce(codes(session, examples), codes(session, others), name)
    except UserError as e:  # no latent beats chance: the slider is refused, which counts as no success
        slider = None
        print(f"\n{name}: best single latent #{latent} (AUROC {auc_single:.3f}); induced: refused ({e})")
    else:
        mix = sum(w * held[:, i] for i, w in slider.weights)
        auc_mix = float(auroc_per_column(mix[:, None].numpy(), held_truth)[0])
        print(
            f"\n{name}: best single latent #{latent} (AUROC {auc_single:.3f}); induced = "
            + " + ".join(f"{w:.2f}x#{i}" for i, w in slider.weights)
            + f" (AUROC {auc_mix:.3f})"
        )
    single = sweep(session, judge, targets, lambda v: [Edit(latent, "add", v * float(unit[latent]))], VALUES, seen)
    induced = []
    if slider is not None:  # the same edit sizes: value v of the single latent's scale, in slider units
        per_value = edit_size(session.sae, [(latent, float(unit[latent]))]) / edit_size(session.sae, slider.weights)
        induced = sweep(session, judge, targets, lambda v: [slider.edit(v * per_value)], VALUES, seen)
    print(f"  {'method (edit size in units of the single latent)':<50}{'size':>6}{'success':>9}{'preserved':>11}")
    for label, rows in (("single latent", single), ("induced slider", induced)):
        for v, s, k in rows:
            print(f"  {label:<50}{v:>6g}{s:>9.3f}{k:>11.3f}")
    (s1, op1), (s2, op2) = at_preservation(single), at_preservation(induced)
    shown = "refused" if slider is None else f"{op2} {s2:.3f}"
    print(f"  success at preservation {PRESERVATION} (interpolated): single {op1} {s1:.3f}, induced {shown}")


def main() -> None:
    global ARGS
    ARGS = parse_args(__doc__, 100)
    session = demo_session(ARGS.decoder)
    judge = Judge.load(DEMO / "judge")
    unit = FeatureIndex.load(DEMO / "sae").typical_max()
    rng = np.random.default_rng(34)
    held_scenes = [world.sample_scene(rng) for _ in range(1000)]
    held = codes(session, [world.render(sc, i) for i, sc in enumerate(held_scenes)])
    compare(session, judge, "cat", has_cat, judged_cat, held, np.array([has_cat(s) for s in held_scenes]), unit)
    compare(session, judge, "red object", has_red, judged_red, held, np.array([has_red(s) for s in held_scenes]), unit)


ARGS = argparse.Namespace(
    steps=default_steps("demo"), strength=default_strength("demo"), n=100, decoder=None, region=DecodeSettings.region
)

if __name__ == "__main__":
    main()
