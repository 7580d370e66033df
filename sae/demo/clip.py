"""The tiny CLIP of the demo world: an open_clip custom ViT (64x64 images, 8x8 patches, 6 blocks)
with a small text tower, trained contrastively on world images and captions.

Saved with open_clip's own ``save_for_hf`` layout, so ``sae.backbone.load_backbone`` loads it
exactly as it loads a real model.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm import tqdm

from sae import atomic
from sae.assets import DEMO
from sae.backbone import save_local_dir
from sae.demo import world
from sae.demo.checkpoint import (
    load_compact,
    load_state,
    recipe_of,
    rewarm,
    save_compact,
    save_state,
)
from sae.demo.data import WorldData, world_data
from sae.demo.supplies import NAME
from sae.worlds import MARKER

CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 6, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
}
QUICK_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 32, "layers": 4, "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
MEAN = open_clip.OPENAI_DATASET_MEAN
STD = open_clip.OPENAI_DATASET_STD


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 64, 64, 3] -> normalised float [N, 3, 64, 64], as open_clip's transform gives."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def concept_prompts(background_words: bool = False) -> dict[str, str]:
    if background_words:
        return {b: f"a picture {world.BACKGROUND_PHRASES[b][0]}" for b in world.BACKGROUNDS}
    return {k: f"a picture of a {world.NAMES.get(k, k)}" for k in world.KINDS}


@torch.no_grad()
def zero_shot(model, tokenizer, data: WorldData, batch: int = 512) -> dict[str, float]:
    """Zero-shot accuracy per concept.

    Objects: on held-out scenes with one object, the object's prompt must score highest of the
    ten ("which object is this?"); the figure per kind is the share of its scenes named right.
    Backgrounds: the top background prompt of six over all scenes.
    """
    model.eval()
    texts = tokenizer(list(concept_prompts().values()))
    t_obj = torch.nn.functional.normalize(model.encode_text(texts), dim=-1)
    t_bg = torch.nn.functional.normalize(model.encode_text(tokenizer(list(concept_prompts(True).values()))), dim=-1)
    feats = []
    for i in range(0, len(data), batch):
        feats.append(torch.nn.functional.normalize(model.encode_image(to_pixels(data.images[i : i + batch])), dim=-1))
    f = torch.cat(feats)
    single = data.present.sum(1) == 1
    pred = (f @ t_obj.T).argmax(1).numpy()
    truth = data.present.argmax(1)
    out = {}
    for i, k in enumerate(world.KINDS):
        sel = single & (truth == i)
        out[k] = float((pred[sel] == i).mean()) if sel.any() else float("nan")
    bg_pred = (f @ t_bg.T).argmax(1).numpy()
    out["background"] = float((bg_pred == data.background).mean())
    return out


def _param_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


# The schedule: (samples, peak learning rate) per phase, each a warm-up and a cosine decay; phase 2
# is a warm restart at a lower rate that sharpens fine shapes (history in the model card).
PHASES = ((360_000, 1e-3), (180_000, 3e-4))
BATCH = 64  # small batches learn more per sample here; twins keep each batch's hardest negatives in it

# The middle layer is also taught what is in the picture (a presence loss read by linear heads on
# its tokens and on the embedding, thrown away after training): contrastive training alone at this
# scale leaves it without object detectors, so no SAE of it could hold a cat latent.
AUX_LAYER = 3  # the default SAE's layer
AUX_WEIGHT = 1.0
RECIPE = "contrastive+presence-L3"
COMPACT = DEMO / "training" / "clip"  # committed between sessions


class PresenceHeads(torch.nn.Module):
    """Linear object-presence logits from the layer-``AUX_LAYER`` tokens (max over tokens) and the embedding."""

    def __init__(self, width: int, embed_dim: int, kinds: int = len(world.KINDS)):
        super().__init__()
        self.tokens = torch.nn.Linear(width, kinds)
        self.embedding = torch.nn.Linear(embed_dim, kinds)

    def loss(self, residual: torch.Tensor, embedding: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        return bce(self.tokens(residual).amax(1), present) + bce(self.embedding(embedding), present)


def _capture_layer(model, layer: int) -> dict:
    """Keep the residual leaving block ``layer - 1`` (= entering ``layer``) as [B, T, d] on each forward."""
    held = {}
    batch_first = getattr(model.visual.transformer, "batch_first", True)

    def hook(_module, _inputs, output):
        held["residual"] = output if batch_first else output.transpose(0, 1)

    model.visual.transformer.resblocks[layer - 1].register_forward_hook(hook)
    return held


def learning_rate(step: int, bounds: list[tuple[int, int, float]]) -> float:
    """Warm-up then cosine within the phase ``step`` falls in; ``bounds`` holds (start, end, peak)."""
    for start, end, peak in bounds:
        if step < end:
            n, i = end - start, step - start
            warmup = min(500, n // 10)
            return peak * min(1.0, (i + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * i / n))
    return 0.0


def train_clip(
    out: Path,
    work: Path,
    phases: tuple = PHASES,
    batch: int = BATCH,
    seed: int = 0,
    quick: bool = False,
    n_train: int = 120_000,
    checkpoint_every: int = 200,
    progress: bool = True,
    should_stop=None,
    compact: Path | None = None,
) -> dict:
    """Train (resuming from ``work`` if a checkpoint is there, else from ``compact``) and save to
    ``out``; returns figures, or ``{"stopped_at": step}`` when ``should_stop()`` says so at a checkpoint."""
    cfg = QUICK_CONFIG if quick else CONFIG
    if quick:
        phases, n_train, batch = ((6_000, 1e-3),), 2_000, 128
    data = world_data(n_train, seed=seed + 1, twins=True)
    held = world_data(2_000, seed=seed + 2) if not quick else world_data(400, seed=seed + 2)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    tokens = tokenizer(data.captions)
    bounds, steps = [], 0
    for samples, peak in phases:
        bounds.append((steps, steps + samples // batch, peak))
        steps += samples // batch
    heads = PresenceHeads(cfg["vision_cfg"]["width"], cfg["embed_dim"])
    modules = {"model": model, "heads": heads}
    groups = _param_groups(model, 0.1)
    groups[0]["params"] += [heads.tokens.weight, heads.embedding.weight]
    groups[1]["params"] += [heads.tokens.bias, heads.embedding.bias]
    opt = torch.optim.AdamW(groups, lr=phases[0][1], betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()
    layer3 = _capture_layer(model, AUX_LAYER)
    present = torch.from_numpy(data.present.astype(np.float32))
    ckpt = work / f"clip-checkpoint-{RECIPE}"
    compact = None if quick else compact
    meta = load_state(ckpt, modules, opt)
    resumed_at = None  # step of a resume from the compact checkpoint, which has no Adam moments
    if meta is None and compact is not None and recipe_of(compact) == RECIPE:
        meta = load_compact(compact, modules)  # a fresh clone continues the committed run
        resumed_at = None if meta is None else meta["step"]
    meta = meta or {"step": 0, "seconds": 0.0}
    step, seconds = meta["step"], meta["seconds"]

    def save_checkpoint() -> None:
        save_state(ckpt, modules, opt, {"step": step, "seconds": seconds, "steps": steps, "recipe": RECIPE})

    rng = np.random.default_rng([seed, step])
    bar = tqdm(total=steps, initial=step, desc="tiny CLIP", unit="step", disable=not progress)
    model.train()
    while step < steps:
        t0 = time.perf_counter()
        lr_now = learning_rate(step, bounds) * rewarm(step, resumed_at)
        for g in opt.param_groups:
            g["lr"] = lr_now
        pairs = rng.integers(0, len(data) // 2, batch // 2)  # minimal pairs side by side in a batch
        idx = np.stack([2 * pairs, 2 * pairs + 1], 1).reshape(-1)
        img = model.encode_image(to_pixels(data.images[idx]))
        txt = model.encode_text(tokens[idx], normalize=True)
        clip_loss = loss_fn(torch.nn.functional.normalize(img, dim=-1), txt, model.logit_scale.exp())
        aux_loss = heads.loss(layer3["residual"], img, present[idx])
        loss = clip_loss + AUX_WEIGHT * aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        seconds += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(clip=f"{clip_loss.item():.3f}", presence=f"{aux_loss.item():.3f}", refresh=False)
        if step % checkpoint_every == 0 and step < steps:
            save_checkpoint()
            rng = np.random.default_rng([seed, step])  # the data order resumes from the step alone
            if should_stop and should_stop():
                bar.close()
                if compact is not None:
                    save_compact(compact, modules, {"step": step, "seconds": seconds, "recipe": RECIPE})
                return {"stopped_at": step}
    bar.close()
    if compact is not None and compact.exists():
        shutil.rmtree(compact)
    model.eval()
    figures = zero_shot(model, tokenizer, held)
    half = open_clip.CLIP(**cfg)
    half.load_state_dict(model.state_dict())
    half.half() if not quick else None
    with atomic.atomic_dir(out) as tmp:
        save_local_dir(half, cfg, tmp, image_mean=MEAN, image_std=STD)
        (tmp / MARKER).write_text(json.dumps({"world": NAME, "recipe": "sae.demo.clip"}) + "\n")
    save_checkpoint()
    return {
        "zero_shot": figures,
        "recipe": RECIPE,
        "batch": batch,
        "train_seconds": seconds,
        "samples": steps * batch,
        "params": sum(p.numel() for p in model.parameters()),
    }
