"""What several test modules share: the command line run in-process, tiny random models in the
shapes of real configs saved in the hub's on-disk layouts, the quick demo, synthetic activations."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from sae.backbone import save_local_dir


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, cwd: str | Path | None = None) -> CliResult:
    """``sae-studio ARGS`` in this process (``sae.cli.main``), its output captured: what a
    subprocess proves too, without importing torch and diffusers again for each call."""
    from sae.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse refusing the arguments
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        finally:
            os.chdir(here)
    return CliResult(code, out.getvalue(), err.getvalue())


def tiny_clip_config(name: str, width: int = 32, image_size: int = 56) -> dict:
    """open_clip's built-in config for ``name`` with every tower narrowed, structure kept.

    Layer count, patch size, MLP ratio, pooling and norm placement stay as in the real model;
    widths, heads and the image size shrink so that the model builds in a fraction of a second.
    """
    cfg = copy.deepcopy(open_clip.get_model_config(name))
    v = cfg["vision_cfg"]
    v["width"] = width
    v["head_width"] = width // 2
    v["image_size"] = image_size
    t = cfg["text_cfg"]
    t.update(width=width, heads=2, layers=2)
    cfg["embed_dim"] = 24
    return cfg


def save_tiny_clip(name: str, folder: Path, seed: int = 0, **kw) -> Path:
    cfg = tiny_clip_config(name, **kw)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    # A random init leaves some parameters at exact zeros or ones; perturb everything so the
    # equivalence checks see every parameter at work.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return save_local_dir(model, cfg, folder)


def copy_quick_demo(built: Path, root: Path, n_images: int) -> tuple[Path, Path]:
    """A module's own copy of the session's quick demo (``build_quick_demo``'s ``root``), which
    it may index, label and rename freely, with ``n_images`` world scenes under ``root/images``."""
    from sae.demo.sae_recipe import write_world_images

    for part in ("demo", "decoder"):
        shutil.copytree(built / part, root / part)
    return root, write_world_images(root / "images", n_images, seed=9)


def build_quick_demo(root: Path, n_images: int) -> tuple[Path, Path]:
    """--quick demo CLIP + SAE under ``root/demo``, a tiny random decoder of the demo's shape
    under ``root/decoder``, and ``n_images`` world scenes under ``root/images``."""
    import os

    from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel

    from sae.backbone import load_backbone
    from sae.demo.build import build
    from sae.demo.decoder import (
        blank_embedding,
        movq_config,
        save_pipeline,
        scheduler_config,
        unet_config,
    )
    from sae.demo.sae_recipe import write_world_images

    os.environ["SAE_STUDIO_CACHE"] = str(root / "cache")
    os.environ["SAE_STUDIO_WORK"] = str(root / "work")
    build(("clip", "sae"), out=root / "demo", quick=True)
    # The build indexes its SAE over its own scenes, as the shipped one is; the tests index it
    # over the scenes they hand it (an index covers one folder).
    shutil.rmtree(root / "demo" / "sae" / "index")
    (root / "demo" / "sae" / "labels.json").unlink()
    bb = load_backbone(str(root / "demo" / "clip"))
    torch.manual_seed(0)
    save_pipeline(
        root / "decoder",
        UNet2DConditionModel(**unet_config(bb.embed_dim, quick=True)),
        VQModel(**movq_config(quick=True)),
        DDIMScheduler(**scheduler_config()),
        blank_embedding(bb),
    )
    return root, write_world_images(root / "images", n_images, seed=9) if n_images else root / "images"


def save_tiny_kandinsky(folder: Path, embed_dim: int, seed: int = 0) -> Path:
    """The Kandinsky 2.2 decoder's real topology narrowed 16-fold (``sae.shapes``), painting at 96
    pixels (sides still in multiples of 64), with a saved negative embedding as the demo's has."""
    from safetensors.torch import save_file

    from sae.shapes import save_kandinsky

    save_kandinsky(folder, factor=16, embed_dim=embed_dim, seed=seed, latent_size=12)
    save_file({"negative_image_embeds": torch.zeros(embed_dim)}, str(folder / "negative_image_embeds.safetensors"))
    return folder


def save_tiny_unclip(folder: Path, embed_dim: int, seed: int = 0) -> Path:
    """SD 2.1 unCLIP's real topology narrowed 16-fold (``sae.shapes``), painting at 96 pixels."""
    from sae.shapes import save_unclip

    return save_unclip(folder, factor=16, embed_dim=embed_dim, seed=seed, latent_size=12)


def tiny_clip_tokenizer(folder: Path, tokenizer_class):
    """A character-level CLIPTokenizer written from scratch (``sae.shapes.write_char_tokenizer``)."""
    from sae.shapes import write_char_tokenizer

    write_char_tokenizer(folder)
    return tokenizer_class(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def synthetic_store(
    folder: Path, d: int = 32, n_latents: int = 128, shards: int = 3, rows: int = 2048, within: int | None = None
) -> Path:
    """Activations that truly are sparse sums of ``n_latents`` unit directions, plus an offset;
    with ``within``, the directions lie mostly in a random subspace of that dimension (as a real
    encoder's residuals spend most of their variance in a few directions)."""
    from sae import atomic
    from sae.activations import MANIFEST_NAME, Manifest, ShardInfo, _write_shard

    g = torch.Generator().manual_seed(0)
    dictionary = torch.randn(n_latents, d, generator=g)
    if within is not None:
        subspace = torch.linalg.qr(torch.randn(d, within, generator=g))[0]
        dictionary = dictionary[:, :within] @ subspace.T + 0.1 * dictionary / d**0.5
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    folder.mkdir(parents=True)
    infos = []
    for i in range(shards):
        codes = (
            (torch.rand(rows, n_latents, generator=g) < 4 / n_latents) * torch.rand(rows, n_latents, generator=g) * 4
        )
        x = codes @ dictionary + 2.0
        _write_shard(folder / f"shard-{i:05d}.npy", x.numpy().astype(np.float32))
        infos.append(ShardInfo(f"shard-{i:05d}.npy", rows, i, i + 1))
    m = Manifest(
        model="synthetic",
        fingerprint="0",
        layer=0,
        token_set="all",
        d=d,
        dtype="fp32",
        tokens_per_image=rows,
        shard_images=1,
        sources=[str(i) for i in range(shards)],
        shards=infos,
        complete=True,
    )
    atomic.write_json(folder / MANIFEST_NAME, m.to_json())
    return folder


def write_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """``n`` random-blob PNGs in ``folder`` (two sub-folders, to exercise recursion)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(sub / f"img{i:04d}.png")
    return folder
