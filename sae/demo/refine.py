"""Refining the demo decoder's autoencoder after its UNet: the movq's decoder half learns on, its
encoder frozen.

The UNet denoises the movq *encoder's* latents, so changing the encoder means retraining the UNet
(hours on a CPU); the decoder half, which turns latents into pixels, can keep learning without
touching it. It learns from the encoder's latents of the CLIP's training scenes, with the small
latent noise the movq was trained with (the UNet's outputs are never exact), and from two losses:
L1 + MSE in pixels, and the tiny CLIP's layer features as a perceptual term (``sae.demo.perceptual``).

The refined movq replaces ``decoder/movq`` in place; ``refine.json`` beside its weights records
the recipe and figures and marks the stage done. ``movq/`` (what the UNet was trained on) is left
as it is, so rebuilding the UNet starts from the same latents.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sae import atomic
from sae.demo import world
from sae.demo.checkpoint import load_state, recipe_of, save_state
from sae.demo.data import world_data
from sae.demo.decoder import to_unit
from sae.demo.perceptual import ClipFeatures, perceptual_loss

MARKER = "refine.json"  # in decoder/movq: the refinement's recipe and figures
REFINE_STEPS = 1_500
PERCEPTUAL = 1.0  # weight of the CLIP-feature term against L1 + MSE (see the module docstring)


def is_refined(decoder_dir: Path) -> bool:
    return (decoder_dir / "movq" / MARKER).is_file()


def refine_movq(
    decoder_dir: Path,
    clip_dir: Path,
    work: Path,
    steps: int = REFINE_STEPS,
    batch: int = 32,
    lr: float = 2e-4,
    perceptual: float = PERCEPTUAL,
    seed: int = 0,
    quick: bool = False,
    checkpoint_every: int = 250,
    progress: bool = True,
    should_stop=None,
) -> dict:
    """Fine-tune ``decoder_dir/movq``'s decoder half (about 1.7 s a step of 32 on two cores of this
    project's CPU) and write it back in place, fp16 as the pipeline ships it."""
    from diffusers import VQModel

    from sae.backbone import weights_fingerprint
    from sae.demo.fidelity import reconstruct

    if quick:
        steps, batch = 20, 8
    movq_dir = decoder_dir / "movq"
    movq = VQModel.from_pretrained(movq_dir, torch_dtype=torch.float32)
    start = weights_fingerprint(movq)[:10]
    frozen = (movq.encoder, movq.quant_conv, movq.quantize)
    for m in frozen:
        m.requires_grad_(False)
    params = [p for p in movq.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    features = ClipFeatures(clip_dir)
    ckpt = work / "refine-checkpoint"
    recipe = f"refine-{start}-{features.backbone.fingerprint[:10]}-perceptual-{perceptual:g}"
    meta = load_state(ckpt, {"movq": movq}, opt) if recipe_of(ckpt) == recipe else None
    meta = meta or {"step": 0, "seconds": 0.0, "recipe": recipe}
    step, seconds = meta["step"], meta["seconds"]
    data = world_data(2_000 if quick else 120_000, seed=1, twins=True)  # the CLIP's scenes, as the movq's
    gen = torch.Generator().manual_seed(seed + step)
    bar = tqdm(total=steps, initial=step, desc="refine", unit="step", disable=not progress)
    while step < steps:
        t0 = time.perf_counter()
        movq.train()
        for m in frozen:
            m.eval()
        for g in opt.param_groups:  # a 50-step warm-up, then a cosine to a tenth
            g["lr"] = lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        idx = torch.randint(0, len(data), (batch,), generator=gen).numpy()
        x = to_unit(data.images[idx])
        with torch.no_grad():
            z = movq.encode(x).latents
            z = z + 0.05 * z.std() * torch.randn(z.shape, generator=gen)
        rec = movq.decode(z, force_not_quantize=True).sample
        loss = (rec - x).abs().mean() + (rec - x).pow(2).mean()
        if perceptual:
            loss = loss + perceptual * perceptual_loss(features, rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seconds += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step % checkpoint_every == 0 and step < steps) or (should_stop and should_stop()):
            save_state(ckpt, {"movq": movq}, opt, {"step": step, "seconds": seconds, "recipe": recipe})
            gen = torch.Generator().manual_seed(seed + step)
            if should_stop and should_stop():
                bar.close()
                return {"stopped_at": step}
    bar.close()
    movq.eval()
    held = world_data(400 if quick else 2_000, seed=2).images[:256]
    with torch.no_grad():
        rec = reconstruct(movq, held)
    figures = {
        "steps": step,
        "batch": batch,
        "lr": lr,
        "perceptual": perceptual,
        "train_seconds": seconds,
        "start": start,
        "l1": float(np.abs(rec.astype(np.float32) - held).mean() / 127.5),
        "world_version": world.VERSION,
    }
    movq.register_to_config(_name_or_path="movq")  # not the local path it was loaded from
    with atomic.atomic_dir(movq_dir) as tmp:
        movq.half().save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(figures, indent=2))
    return figures
