"""The options of ``sae-studio extract`` and ``train``: plain dataclasses, so that the command
line (and its ``--help``) is built from them without importing torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ExtractConfig:
    """Options of ``sae-studio extract`` (the CLI is generated from these fields)."""

    model: str = field(metadata={"help": "open_clip NAME:TAG or a local-dir model folder"})
    images: str = field(metadata={"help": "folder of images, searched recursively"})
    out: str = field(metadata={"help": "activations folder to write (resumes if it exists)"})
    layer: str | None = field(
        default=None,
        metadata={
            "help": "residual entering this block, or 'embedding' for the projected image embedding (default: the "
            "middle)"
        },
    )
    tokens: str = field(default="all", metadata={"help": "token set: all, patches or cls"})
    dtype: str = field(default="fp16", metadata={"help": "shard dtype: fp16 or fp32"})
    shard_mb: float = field(default=64.0, metadata={"help": "target size of one shard in MB"})
    batch_size: int = field(default=32, metadata={"help": "images per forward pass"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, mps or auto"})


@dataclass
class TrainConfig:
    """Options of ``sae-studio train``: the CLI is generated from these fields, and the Train dialog
    and ``sae.make`` train with them (the dialog shows their defaults)."""

    acts: str = field(metadata={"help": "activations folder made by sae-studio extract"})
    out: str = field(metadata={"help": "SAE folder to write (SAELens layout)"})
    arch: str = field(default="topk", metadata={"help": "topk (default) or relu (ReLU + L1)"})
    expansion: int = field(default=8, metadata={"help": "latents per input dimension (ignored with --width)"})
    width: int | None = field(default=None, metadata={"help": "number of latents, d_sae"})
    k: int = field(default=32, metadata={"help": "active latents per token (topk)"})
    l1: float = field(default=5.0, metadata={"help": "L1 coefficient, scaled by decoder norms (relu)"})
    tokens: int = field(default=10_000_000, metadata={"help": "training tokens"})
    batch_size: int = field(default=1024, metadata={"help": "tokens per step"})
    lr: float | None = field(default=None, metadata={"help": "Adam learning rate (default 2e-4 / sqrt(width / 16384))"})
    seed: int = field(default=0, metadata={"help": "seed of the init and the data order"})
    auxk_alpha: float = field(default=1 / 32, metadata={"help": "weight of the AuxK loss on dead latents (topk)"})
    dead_tokens: int = field(default=10_000_000, metadata={"help": "a latent silent this many tokens is dead"})
    prune_below: float = field(
        default=0.0,
        metadata={
            "help": "after training, drop the latents that fire on fewer than this fraction of the training tokens "
            "(one pass with the final weights; e.g. 1e-5); 0 keeps every latent"
        },
    )
    checkpoint_every: int = field(default=1000, metadata={"help": "steps between resumable checkpoints"})
    matmul: str = field(default="auto", metadata={"help": "encoder GEMM dtype: auto, fp32 or bf16"})
    encoder: str = field(
        default="dense",
        metadata={
            "help": "how each token's top k is found (topk): dense scores every latent; sketch lets a low-rank "
            "sketch propose candidates whose values are then computed exactly (faster, may miss a few; its "
            "recall is logged)"
        },
    )
    sketch_rank: int = field(default=0, metadata={"help": "the sketch's rank; 0 takes half the input width"})
    sketch_pool: int = field(
        default=0, metadata={"help": "candidates per token the sketch proposes; 0 takes 4k (at most the width)"}
    )
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N, mps or auto"})
    resume: bool = field(default=False, metadata={"help": "continue the run saved in --out"})

    @property
    def d_sae_for(self) -> Callable[[int], int]:
        return lambda d_in: self.width or self.expansion * d_in

    def learning_rate(self, d_sae: int) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(d_sae / 16384)
