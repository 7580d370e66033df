"""The TopK SAE's training step without dense work beyond the one encoder GEMM.

The forward pass needs the dense pre-activations ``[B, d_sae]`` once, to choose the top k.
Everything after touches only the chosen latents: decoding gathers k decoder rows per token
(``embedding_bag``), and the backward pass scatters gradients into the rows of the latents
that fired (``index_add_``) instead of multiplying by a dense ``[B, d_sae]`` gradient.
Compared with autograd through ``Linear -> topk -> Linear`` this drops two of the three
dense GEMMs of a step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TopKEncode(torch.autograd.Function):
    """(xc [B, d], W_enc_T [F, d], b_enc [F]) -> top-k codes, plus AuxK codes over dead latents.

    Returns ``values [B, k]`` (after ReLU), ``indices [B, k]``, ``aux_values [B, k_aux]``,
    ``aux_indices [B, k_aux]``; the AuxK pair is empty when ``dead`` is None or k_aux is 0.
    ``mm_dtype`` is the dtype of the one dense GEMM (bf16 where the hardware is fast at it).

    The AuxK values are ReLU'd in the forward pass like the main ones, but their gradient goes
    straight through the ReLU: a dead latent's pre-activation is negative on almost every token,
    so with the ReLU's own gradient AuxK would reach it on the few tokens where it is already
    positive. Straight through, AuxK raises its pre-activation wherever its decoder row points
    along the residual error, which revives dead latents within a few hundred steps (the
    shipped demo SAE, continued 4,000 steps: latents that never fire on an epoch of its data
    463 -> 178 with it, 463 -> 364 without).
    """

    @staticmethod
    def forward(ctx, xc, W_enc_T, b_enc, k: int, mm_dtype: torch.dtype, dead, k_aux: int):
        if mm_dtype == xc.dtype:
            pre = torch.addmm(b_enc, xc, W_enc_T.T)
        else:
            pre = (xc.to(mm_dtype) @ W_enc_T.to(mm_dtype).T).float().add_(b_enc)
        values, indices = pre.topk(k, dim=-1, sorted=False)
        values = values.relu()
        if dead is not None and k_aux > 0:
            aux_pre = pre.masked_fill_(~dead, float("-inf"))
            aux_values, aux_indices = aux_pre.topk(k_aux, dim=-1, sorted=False)
            aux_values = aux_values.relu()  # -inf (a live latent, when few are dead) becomes 0
        else:
            aux_values = xc.new_zeros(xc.shape[0], 0)
            aux_indices = indices.new_zeros(xc.shape[0], 0)
        ctx.save_for_backward(xc, W_enc_T, indices, values, aux_indices, aux_values)
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx, g_values, _g_indices, g_aux_values, _g_aux_indices):
        xc, W_enc_T, indices, values, aux_indices, aux_values = ctx.saved_tensors
        g = torch.cat([g_values * (values > 0), g_aux_values], dim=1)  # [B, k+ka]; AuxK straight through
        idx = torch.cat([indices, aux_indices], dim=1)  # [B, k+ka]
        B, kk = idx.shape
        flat = idx.reshape(-1)
        g_b_enc = torch.zeros_like(W_enc_T[:, 0]).index_add_(0, flat, g.reshape(-1))
        rows = (g.unsqueeze(2) * xc.unsqueeze(1)).reshape(B * kk, -1)  # [B*(k+ka), d]
        g_W = torch.zeros_like(W_enc_T).index_add_(0, flat, rows)
        g_xc = F.embedding_bag(idx, W_enc_T, per_sample_weights=g, mode="sum")  # [B, d]
        return g_xc, g_W, g_b_enc, None, None, None, None


def decode_rows(indices: torch.Tensor, values: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """sum_j values[b, j] * W_dec[indices[b, j]] -> [B, d], without the dense code."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")


@torch.no_grad()
def remove_parallel_grad_(W_dec: torch.nn.Parameter) -> None:
    """Project each decoder row's gradient onto the row's tangent space (rows stay unit norm)."""
    if W_dec.grad is None:
        return
    parallel = torch.linalg.vecdot(W_dec.grad, W_dec)  # [F], no [F, d] temporary
    W_dec.grad.addcmul_(parallel.unsqueeze(1), W_dec, value=-1.0)


@torch.no_grad()
def normalize_rows_(W: torch.Tensor) -> None:
    W.div_(W.norm(dim=-1, keepdim=True).clamp_min(1e-8))
