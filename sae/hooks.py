"""Hook names of other tools mapped to sae-studio's layer L (the residual stream entering block L):

embedding / image_embeds  -> EMBEDDING (the projected image embedding)
blocks.9.hook_resid_pre   -> 9      (SAELens / TransformerLens, ViT-Prisma)
blocks.9.hook_resid_post  -> 10
layers.9 / resblocks.9 / encoder.layers.9 (a block's output, sparsify's hookpoints) -> 10
blocks.9.hook_mlp_out / blocks.9.hook_attn_out -> block 9's MLP / attention output (``sublayer_from_hook``)
"""

from __future__ import annotations

import re

EMBEDDING = -2  # the "layer" of SAEs on the projected image embedding (sae.backbone.EMBEDDING)
# Where in a block an SAE reads: the residual stream entering it, or what its attention or MLP adds.
RESID, ATTN_OUT, MLP_OUT = "resid", "attn_out", "mlp_out"
SITES = (RESID, ATTN_OUT, MLP_OUT)
SITE_WORDS = {RESID: "residual stream", ATTN_OUT: "attention output", MLP_OUT: "MLP output"}
EMBEDDING_HOOKS = ("embedding", "image_embeds", "image_embedding", "hook_image_embeds", "visual.proj", "clip_embedding")
_PRE = re.compile(r"(?:^|\.)blocks\.(\d+)\.hook_resid_pre$")
_POST = re.compile(r"(?:^|\.)blocks\.(\d+)\.hook_resid_post$")
_BLOCK_OUT = re.compile(r"(?:^|\.)(?:layers|resblocks|blocks|layer|h)\.(\d+)$")


_SUBLAYER = re.compile(r"(?:^|\.)blocks\.(\d+)\.hook_(mlp|attn)_out$")


def sublayer_from_hook(name: str) -> tuple[int, str] | None:
    """(block, ATTN_OUT or MLP_OUT) for ``blocks.N.hook_attn_out`` / ``blocks.N.hook_mlp_out``, else None."""
    if m := _SUBLAYER.search(name.strip()):
        return int(m.group(1)), MLP_OUT if m.group(2) == "mlp" else ATTN_OUT
    return None


def layer_from_hook(name: str) -> int | None:
    """sae-studio's layer for a hook name, or None when the name is not a residual stream."""
    name = name.strip()
    if name.lower() in EMBEDDING_HOOKS:
        return EMBEDDING
    if m := _PRE.search(name):
        return int(m.group(1))
    if m := _POST.search(name):
        return int(m.group(1)) + 1
    if m := _BLOCK_OUT.search(name):
        return int(m.group(1)) + 1
    return None
