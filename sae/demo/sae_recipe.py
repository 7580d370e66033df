"""The default SAE: TopK on the tiny CLIP's middle-layer residual (all tokens), 16x expansion."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from sae.activations import extract
from sae.backbone import load_backbone
from sae.demo.data import HELD_OUT_SEED, world_data
from sae.make import index_and_label
from sae.train import TrainConfig, Trainer

SAE_SEED = 3  # world seed of the images the SAE is trained on (the CLIP saw seed 1)
INDEX_SEED = 4  # world seed of the scenes its shipped index covers (the top images people browse)
INDEX_IMAGES = 1_000
# Latents firing on fewer than 1 in 100,000 training tokens (26 of its 2.6M) are dropped after
# training: trained with AuxK straight through, 20% of the 2,048 still fire on no held-out scene.
PRUNE_BELOW = 1e-5
DEAD_CHECK_IMAGES = 10_000  # held-out scenes (650k tokens) on which every latent should fire at least once


def write_world_images(folder: Path, n: int, seed: int) -> Path:
    """Save ``n`` world scenes as PNG files (once), so extraction runs its ordinary folder path."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    data = world_data(n, seed=seed)
    for i, im in enumerate(data.images):
        Image.fromarray(im).save(folder / f"{i:06d}.png", compress_level=1)
    return folder


def train_demo_sae(out: Path, clip_dir: Path, work: Path, quick: bool = False, progress: bool = True) -> dict:
    n_images = 2_000 if quick else 40_000
    backbone = load_backbone(str(clip_dir))
    images = write_world_images(work / f"sae-images-{n_images}", n_images, SAE_SEED)
    acts = work / f"sae-acts-{n_images}-{backbone.fingerprint[:12]}"  # a retrained CLIP gets new ones
    extract(backbone, images, acts, token_set="all", dtype="fp16", progress=progress)
    if out.exists() and not (out / "trainer_state.json").is_file():
        shutil.rmtree(out)  # a new SAE: the old one's index and labels must not carry over
    cfg = TrainConfig(
        acts=str(acts),
        out=str(out),
        expansion=16,
        k=16 if not quick else 8,
        tokens=300_000 if quick else 30_000_000,
        batch_size=1024,
        seed=0,
        resume=(out / "trainer_state.json").is_file(),
        prune_below=PRUNE_BELOW,
    )
    trainer = Trainer(cfg, progress=progress)
    model = trainer.run()
    from sae.demo.clip import to_pixels
    from sae.evaluate import splice_cosine

    held = world_data(400 if quick else 2_000, seed=2)
    cos = splice_cosine(backbone, model, to_pixels(held.images[:256]), "all")
    model.metadata.metrics["splice_cosine"] = cos
    model.metadata.metrics["dead_held_out"] = dead_held_out(backbone, model, 500 if quick else DEAD_CHECK_IMAGES)
    # its encoder as a path from its own folder (sae.backbone.beside), so the pair works wherever it is copied
    model.metadata.backbone = f"local-dir:{os.path.relpath(Path(clip_dir).resolve(), Path(out).resolve())}"
    model.save(out)
    n_index = 200 if quick else INDEX_IMAGES  # the index and labels ship with the SAE, as the app reads them
    index_and_label(
        out,
        backbone,
        model,
        write_world_images(work / f"index-images-{n_index}", n_index, INDEX_SEED),
        "demo",
        progress=progress,
    )
    return {k: float(v) for k, v in model.metadata.metrics.items()} | {"images": n_images, "index_images": n_index}


def dead_held_out(backbone, sae, n_images: int = DEAD_CHECK_IMAGES) -> float:
    """Fraction of latents that fire on no token of ``n_images`` held-out scenes.

    Stricter than the trainer's ``dead_fraction`` (silent for 10M training tokens, as sparsify
    and OpenAI count): a latent the weights keep reviving and losing during training passes
    that one, yet the finished SAE may never use it, and in the app it is a feature with no
    top images.
    """

    codes = image_codes(backbone, sae, world_data(n_images, seed=HELD_OUT_SEED).images)
    return float((codes.max(0) <= 0).mean())


def image_codes(backbone, sae, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Image-level SAE activations [N, d_sae]: the max over tokens of each latent."""
    import torch

    from sae.demo.clip import to_pixels

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            resid = backbone.prefix(to_pixels(images[i : i + batch]))
            out.append(sae.encode(resid).amax(1).numpy())
    return np.concatenate(out)
