"""How faithfully the demo decoder paints what the CLIP saw, refereed by the judge.

Three rows, each the share of held-out scenes whose *judged* labels survive the round trip
(the judge's reading of the original is the reference, so the judge's own errors do not count
against the decoder):

- ``autoencoder``: movq encode + decode alone;
- ``img2img``: the scene's own CLIP embedding, img2img from the scene at strength 0.5 (how edits
  are made);
- ``from_noise``: the scene's own CLIP embedding decoded from pure noise (what adding a new object
  needs).

"Objects" means the whole set of object kinds agrees (not a per-label average, which the many
absent kinds would inflate); "background" the background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from sae.decoders.base import DecodeSettings

STRENGTH = 0.5  # img2img strength of the edit path
STEPS = 12
GUIDANCE = 3.0


def _agreement(judge, reference: np.ndarray, images: np.ndarray) -> dict:
    """Shares of scenes whose judged objects / background / both survive, and per kind how many
    scenes showed it before (``present``), lost it (``lost``) or gained it (``gained``)."""
    from sae.demo import world

    ref, out = judge.predict(reference), judge.predict(images)
    before, after = ref.present > 0.5, out.present > 0.5
    objects = (before == after).all(1)
    background = ref.background == out.background
    kinds = {
        k: {
            "present": int(before[:, i].sum()),
            "lost": int((before[:, i] & ~after[:, i]).sum()),
            "gained": int((~before[:, i] & after[:, i]).sum()),
        }
        for i, k in enumerate(world.KINDS)
    }
    return {
        "objects": float(objects.mean()),
        "background": float(background.mean()),
        "both": float((objects & background).mean()),
        "kinds": kinds,
    }


def preservation(j0, j1, kind: str | None = None) -> float:
    """The share of labels (background, each kind's presence but ``kind``'s) the judge reads the
    same on the edited decode (``j1``) as on the unedited one (``j0``), over all scenes."""
    from sae.demo import world

    others = [i for i, k in enumerate(world.KINDS) if k != kind]
    same = ((j0.present[:, others] > 0.5) == (j1.present[:, others] > 0.5)).sum(1) + (j0.background == j1.background)
    return float((same / (len(others) + 1)).mean())


def _as_array(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB").resize((64, 64), Image.BICUBIC)) for im in images])


@torch.no_grad()
def reconstruct(movq, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 scenes through the autoencoder alone (encode, decode without quantising)."""
    from sae.demo.decoder import to_unit

    out = []
    for i in range(0, len(images), batch):
        x = to_unit(images[i : i + batch]).to(movq.device, movq.dtype)
        rec = movq.decode(movq.encode(x).latents, force_not_quantize=True).sample
        out.append(((rec.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def autoencoder_fidelity(movq, judge, images: np.ndarray) -> dict:
    return _agreement(judge, images, reconstruct(movq, images))


@torch.no_grad()
def round_trips(
    decoder, backbone, images: np.ndarray, seed: int = 0, paint: bool = True, paint_only: bool = False
) -> tuple[list[Image.Image] | None, list[Image.Image] | None]:
    """Each scene decoded from its own CLIP embedding: img2img from the scene at ``STRENGTH`` (how
    edits are made; not with ``paint_only``), and (``paint``) from pure noise."""
    from sae.demo.clip import to_pixels

    embeds = backbone.encode_image(to_pixels(images))
    pil = [Image.fromarray(im) for im in images]
    paint = paint or paint_only
    kept = None
    if not paint_only:
        kept = decoder.decode_many(embeds, pil, DecodeSettings(STEPS, STRENGTH, GUIDANCE, seed=seed))
    painted = decoder.decode_many(embeds, None, DecodeSettings(STEPS, 1.0, GUIDANCE, seed=seed)) if paint else None
    return kept, painted


def batched_round_trips(
    decoder,
    backbone,
    images: np.ndarray,
    batch: int = 32,
    paint: bool = True,
    progress: bool = False,
    paint_only: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``round_trips`` batch by batch, each batch seeded by its first scene's index (what
    ``decoder_fidelity`` measures), as uint8 arrays."""
    kept, painted = [], []
    for i in tqdm(range(0, len(images), batch), desc="decoder fidelity", unit="batch", disable=not progress):
        k, p = round_trips(decoder, backbone, images[i : i + batch], seed=i, paint=paint, paint_only=paint_only)
        if k is not None:
            kept.append(_as_array(k))
        if p is not None:
            painted.append(_as_array(p))
    return (np.concatenate(kept) if kept else None), (np.concatenate(painted) if painted else None)


def decoder_fidelity(decoder, backbone, judge, images: np.ndarray, batch: int = 32, progress: bool = True) -> dict:
    """``decoder`` a ``KandinskyDecoder`` (the demo one), ``backbone`` the tiny CLIP, ``images``
    uint8 [N, 64, 64, 3] held-out scenes."""
    kept, painted = batched_round_trips(decoder, backbone, images, batch, progress=progress)
    return {
        "autoencoder": autoencoder_fidelity(decoder.img2img.movq, judge, images),
        "img2img": _agreement(judge, images, kept),
        "from_noise": _agreement(judge, images, painted),
        "scenes": len(images),
        "steps": STEPS,
        "strength": STRENGTH,
        "guidance": GUIDANCE,
    }


def sample_grid(decoder, backbone, images: np.ndarray, out: Path, seed: int = 0) -> Path:
    """A PNG grid: originals, img2img at 0.5, and from noise, one column per scene."""
    kept, painted = round_trips(decoder, backbone, images, seed)
    rows = [[Image.fromarray(im) for im in images], kept, painted]
    grid = Image.new("RGB", (64 * len(images), 64 * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.convert("RGB").resize((64, 64)), (64 * c, 64 * r))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
