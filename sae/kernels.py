"""The TopK SAE's training step without dense work beyond the one encoder GEMM.

The forward pass needs the dense pre-activations ``[B, d_sae]`` once, to choose the top k; they
are written into a buffer the trainer keeps, so no step pays for fresh pages. Everything after
touches only the chosen latents ("fires"), and the gradients are written by hand instead of by
autograd:

- a decoder row's gradient is a weighted sum of the rows that chose it, gathered per latent
  (``FiresByLatent``: one sparse-dense product over the fires sorted by latent, written in place:
  no ``[B*k, d]`` temporary and no zero fill);
- a fire's value gradient is one dot product (``fire_dots``: a sampled matrix product that
  computes ``g @ W_dec.T`` at the fires only);
- the decoder gradient leaves ``topk_backward`` already projected onto each row's tangent space
  (rows stay unit norm): the part along a row is a sum of the fires' own products, so the
  projection needs no extra pass to find it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Codes:
    """The fires of one batch: the top k per token, and the AuxK top k_aux among dead latents
    (``aux_*`` are ``[B, 0]`` when no latent is dead)."""

    values: torch.Tensor  # [B, k], after ReLU
    indices: torch.Tensor  # [B, k]
    aux_values: torch.Tensor  # [B, k_aux], after ReLU
    aux_indices: torch.Tensor  # [B, k_aux]


class Scratch:
    """Tensors kept from step to step, by name; a new shape, dtype or device replaces one. A fresh
    tensor of this size costs its pages (about 13 ms for 50 MB here), more than a top k."""

    def __init__(self):
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        t = self._tensors.get(name)
        if t is None or tuple(t.shape) != tuple(shape) or t.dtype != dtype or t.device != device:
            t = self._tensors[name] = torch.empty(shape, dtype=dtype, device=device)
        return t


@torch.no_grad()
def topk_codes(
    xc: torch.Tensor,
    W_enc_T: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    mm_dtype: torch.dtype,
    dead: torch.Tensor | None,
    k_aux: int,
    scratch: Scratch | None = None,
) -> Codes:
    """The one dense GEMM (in ``mm_dtype``, into ``scratch``), the top k of it, and the AuxK top
    k_aux among ``dead`` latents when k_aux > 0. With a GEMM in lower precision, the latents are
    chosen from it and their values computed again in ``xc``'s precision, at the fires only."""
    scratch = scratch or Scratch()
    shape = (xc.shape[0], W_enc_T.shape[0])
    exact = mm_dtype == xc.dtype
    if exact:
        pre = torch.addmm(b_enc, xc, W_enc_T.T, out=scratch.get("pre", shape, xc.dtype, xc.device))
    else:
        w = scratch.get("W_enc_T", tuple(W_enc_T.shape), mm_dtype, xc.device).copy_(W_enc_T)
        pre = scratch.get("pre", shape, mm_dtype, xc.device)
        torch.addmm(b_enc.to(mm_dtype), xc.to(mm_dtype), w.T, out=pre)

    def choose(scores: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = top(scores, n)
        if not exact:
            values = exact_pre(indices, xc, W_enc_T, b_enc)
        return values.relu_(), indices

    values, indices = choose(pre, k)
    if dead is not None and k_aux > 0:
        aux_values, aux_indices = choose(pre.masked_fill_(~dead, float("-inf")), k_aux)
    else:
        aux_values, aux_indices = xc.new_zeros(xc.shape[0], 0), indices.new_zeros(xc.shape[0], 0)
    return Codes(values, indices, aux_values, aux_indices)


def top(scores: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.topk(n, dim=-1, sorted=False)``, faster on wide rows, with the same values (among
    equal scores it may pick another index). The latents are split into ``g`` strided groups; one
    vectorised max per group, the top n groups by their maxima (the same way, while they are
    many), then the top n among those groups' members. Exact: a latent in the top n has a group
    maximum at least its score, and fewer than n groups can beat that."""
    B, N = scores.shape
    g = 16 if N >= 2048 * n else 8  # the group sizes measured best (bench/README.md)
    groups = N // g
    if N % g or groups < 4 * n or not scores.is_contiguous():
        return scores.topk(n, dim=-1, sorted=False)
    maxima = scores.view(B, g, groups).amax(dim=1)  # latent j is in group j % groups
    best = top(maxima, n)[1]
    members = (best.unsqueeze(2) + torch.arange(0, N, groups, device=scores.device)).reshape(B, n * g)
    values, at = scores.gather(1, members).topk(n, dim=-1, sorted=False)
    return values, members.gather(1, at)


def decode_rows(indices: torch.Tensor, values: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """sum_j values[b, j] * W_dec[indices[b, j]] -> [B, d], without the dense code."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")


class FiresByLatent:
    """The fires of a batch (``latents``: one entry per fire, flat) sorted by latent once, to sum
    per latent any weighted rows the fires point at."""

    def __init__(self, latents: torch.Tensor, n: int):
        self.order = torch.argsort(latents, stable=True)
        self.n = n
        # row f of a [n, rows] sparse matrix holds latent f's fires
        self.crow = torch.cat([latents.new_zeros(1), torch.bincount(latents, minlength=n).cumsum(0)])

    def sums(self, rows_of: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor, out: torch.Tensor) -> None:
        """``out`` [n, d] := for each latent f, the sum of ``weights[i] * rows[rows_of[i]]`` over
        its fires i (zero for a latent that did not fire): one sparse-dense product written into
        ``out`` (half the time of per-latent ``embedding_bag`` sums copied into it)."""
        with warnings.catch_warnings():  # torch calls its sparse layouts beta; this use is covered by tests
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            per_latent = torch.sparse_csr_tensor(
                self.crow,
                rows_of[self.order],
                weights[self.order].to(rows.dtype),
                size=(self.n, rows.shape[0]),
                check_invariants=False,
            )
            torch.addmm(out, per_latent, rows, beta=0.0, out=out)


def exact_pre(indices: torch.Tensor, xc: torch.Tensor, W_enc_T: torch.Tensor, b_enc: torch.Tensor) -> torch.Tensor:
    """[B, kk]: the encoder's pre-activations at the fires ``indices``, in ``xc``'s precision."""
    return fire_dots(indices, xc, W_enc_T).add_(b_enc[indices])


def fire_dots(indices: torch.Tensor, rows: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """[B, kk]: <rows[b], W[indices[b, j]]> for each fire, i.e. ``rows @ W.T`` at the fires only.
    ``indices`` holds distinct latents per row (a top k does)."""
    B, kk = indices.shape
    if kk == 0:
        return rows.new_zeros(B, 0)
    cols, order = indices.sort(dim=1)
    crow = torch.arange(0, B * kk + 1, kk, device=indices.device)
    with warnings.catch_warnings():  # torch calls its sparse layouts beta; this use is covered by tests
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        at = torch.sparse_csr_tensor(
            crow, cols.reshape(-1), rows.new_zeros(B * kk), size=(B, W.shape[0]), check_invariants=False
        )
        dots = torch.sparse.sampled_addmm(at, rows, W.T, beta=0.0).values().reshape(B, kk)
    return torch.empty_like(dots).scatter_(1, order, dots)


@dataclass
class Grads:
    W_enc_T: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor  # projected: no component along each row
    b_dec: torch.Tensor


@torch.no_grad()
def topk_backward(
    xc: torch.Tensor,
    codes: Codes,
    g_recon: torch.Tensor,
    g_aux: torch.Tensor | None,
    W_enc_T: torch.Tensor,
    W_dec: torch.Tensor,
    scratch: Scratch,
) -> Grads:
    """The gradients of a loss whose gradient is ``g_recon`` [B, d] at the reconstruction
    ``decode_rows(codes.indices, codes.values) + b_dec`` (with ``xc = x - b_dec`` the encoder's
    input) and ``g_aux`` [B, d] at the AuxK reconstruction ``decode_rows(codes.aux_*)``. The
    two weight gradients are written into ``scratch`` ("g_W_enc_T", "g_W_dec"), whole.

    AuxK's gradient reaches the encoder only where it raises a dead latent's pre-activation, and
    there straight through the ReLU; the decoder rows take all of it. Straight through: a dead
    latent is negative on almost every token, and with the ReLU's own gradient AuxK would reach it
    only where it already fires. Only raising: the dead latents' summed prediction overshoots the
    residual at first, and the full gradient shrinks their values, driving them further from
    firing (8,192 latents, 4M tokens: 52% dead at the end with it, 29% without AuxK, 0.1% now).
    """
    B, k = codes.indices.shape
    n = W_dec.shape[0]
    tokens = torch.arange(B, device=xc.device)
    g_values = fire_dots(codes.indices, g_recon, W_dec)  # d loss / d value, per fire
    latents, weights = [codes.indices.reshape(-1)], [codes.values.reshape(-1)]
    dec_rows_of, dec_rows, value_grads = [tokens.repeat_interleave(k)], [g_recon], [g_values.reshape(-1)]
    enc_grads = [(g_values * (codes.values > 0)).reshape(-1)]
    if g_aux is not None and codes.aux_indices.shape[1]:
        k_aux = codes.aux_indices.shape[1]
        g_aux_values = fire_dots(codes.aux_indices, g_aux, W_dec)
        latents.append(codes.aux_indices.reshape(-1))
        weights.append(codes.aux_values.reshape(-1))
        dec_rows_of.append(B + tokens.repeat_interleave(k_aux))
        dec_rows.append(g_aux)
        value_grads.append(g_aux_values.reshape(-1))
        enc_grads.append(g_aux_values.clamp(max=0.0).reshape(-1))  # descent only raises the pre-activation
    latents, weights, value_grads, g_pre = (torch.cat(t) for t in (latents, weights, value_grads, enc_grads))
    token_of = torch.cat([r % B for r in dec_rows_of])

    fires = FiresByLatent(latents, n)
    g_W_dec = scratch.get("g_W_dec", tuple(W_dec.shape), W_dec.dtype, W_dec.device)
    fires.sums(torch.cat(dec_rows_of), weights, torch.cat(dec_rows), out=g_W_dec)
    # <g_W_dec[f], W_dec[f]> = sum over f's fires of value * <g, W_dec[f]> = value * value gradient
    along = torch.zeros(n, dtype=g_W_dec.dtype, device=g_W_dec.device).index_add_(0, latents, weights * value_grads)
    g_W_dec.addcmul_(along.unsqueeze(1), W_dec, value=-1.0)

    g_W_enc = scratch.get("g_W_enc_T", tuple(W_enc_T.shape), xc.dtype, xc.device)
    fires.sums(token_of, g_pre, xc, out=g_W_enc)
    g_b_enc = torch.zeros(n, dtype=xc.dtype, device=xc.device).index_add_(0, latents, g_pre)
    # b_dec adds to the reconstruction and is taken off the encoder's input
    g_b_dec = g_recon.sum(0) - g_b_enc @ W_enc_T
    return Grads(g_W_enc, g_b_enc, g_W_dec, g_b_dec)


@torch.no_grad()
def normalize_rows_(W: torch.Tensor) -> None:
    W.div_(W.norm(dim=-1, keepdim=True).clamp_min(1e-8))
