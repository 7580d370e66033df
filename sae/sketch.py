"""A low-rank sketch of the encoder that proposes each token's top k without the dense GEMM.

The pre-activations ``xc @ W_enc.T`` are approximated in the inputs' top ``rank`` principal
directions: ``(xc @ basis) @ (basis.T @ W_enc.T)``, a GEMM ``rank / d_in`` the size of the dense
one. The sketch's best ``pool`` latents per token are the candidates; their exact pre-activations
are computed at those fires only and the top k taken among them, so every value a step uses is
exact and only the choice can miss. ``recall`` measures how often it does.

The sketch is kept current as the encoder learns: its weights (``basis.T @ W_enc.T``) are
rebuilt every ``period`` steps, the basis (a running covariance of the inputs over the global
batch) every ``BASIS_REFRESH`` steps. The period starts at ``REFRESH`` and follows the measured
recall: a large learning rate moves the encoder faster than a stale sketch can follow, so the
period halves (down to every step) while recall is below ``RECALL_LOW`` and doubles back while it
is above ``RECALL_HIGH``. All of it is a pure function of the trainer's state and is saved with
it, so a resumed run is bit-identical.
"""

from __future__ import annotations

import torch

from sae import distributed, kernels
from sae.errors import UserError

REFRESH = 8  # steps between rebuilds of the sketch's weights, at most (a power of two)
RECALL_LOW, RECALL_HIGH = 0.98, 0.99  # the recall band the rebuild period keeps to
BASIS_REFRESH = 64  # steps between new principal directions
OPTIMISM = 1.0  # in standard deviations of a random direction's dot product
COVARIANCE_DECAY = 0.5  # weight of the old covariance at each basis refresh
EXACT_AUX_SHARE = 16  # AuxK scores the dead latents exactly while they are at most 1/16 of all
# Candidates per token by default, in multiples of k: at 2k the sketch missed more than 1% of the
# exact top k at 2,048 and 16,384 latents, at 4k under 1%, for 6-13% more time a step at 131k
# latents (bench/README.md).
POOL_PER_K = 4


def check(arch: str, k: int, d_in: int, d_sae: int, rank: int, pool: int) -> None:
    """One sentence for a sketch this SAE cannot use."""
    if arch != "topk":
        raise UserError("--encoder sketch proposes a top k: it serves --arch topk only, not relu.")
    if not 0 < rank < d_in:
        raise UserError(f"--sketch-rank must be between 1 and {d_in - 1} (the input width is {d_in}), not {rank}.")
    if not k <= pool <= d_sae:
        raise UserError(f"--sketch-pool must be at least k ({k}) and at most the width ({d_sae}), not {pool}.")


class Sketch:
    """The sketch's state: ``basis`` [d_in, rank], ``weights`` [rank + 1, d_sae] (in ``dtype``) and the
    inputs' running second moment ``covariance`` [d_in, d_in]."""

    def __init__(self, d_in: int, d_sae: int, rank: int, pool: int, dtype: torch.dtype, device: torch.device):
        self.rank, self.pool, self.dtype = rank, pool, dtype
        self.basis = torch.zeros(d_in, rank, device=device)
        # the last row holds each latent's encoder norm outside the basis (see ``scores``)
        self.weights = torch.zeros(rank + 1, d_sae, dtype=dtype, device=device)
        self.covariance = torch.zeros(d_in, d_in, device=device)
        self.started = False
        self.period = REFRESH  # steps between rebuilds of the weights now (1, 2, 4 or 8)

    # -- keeping it current ------------------------------------------------------------------
    @torch.no_grad()
    def refresh(self, step: int, xc: torch.Tensor, W_enc_T: torch.Tensor) -> None:
        """Rebuild what is due at ``step`` (everything on the first call)."""
        if self.started and step % self.period:
            return
        if not self.started or step % BASIS_REFRESH == 0:
            moment = distributed.total(torch.cat([(xc.T @ xc).reshape(-1), xc.new_tensor([xc.shape[0]])]))
            batch = moment[:-1].reshape(self.covariance.shape) / moment[-1]
            if self.started:
                self.covariance.mul_(COVARIANCE_DECAY).add_(batch, alpha=1 - COVARIANCE_DECAY)
            else:
                self.covariance.copy_(batch)
            # eigh orders ascending: the last columns are the principal directions
            self.basis.copy_(torch.linalg.eigh(self.covariance.double())[1][:, -self.rank :].float())
        # in the sketch's own precision: this product is as large as a tenth of a step's GEMM
        torch.mm(self.basis.T.to(self.dtype), W_enc_T.T.to(self.dtype), out=self.weights[:-1])
        inside = self.weights[:-1].float().pow(2).sum(0)  # a copy: in fp32 .float() is the weights themselves
        self.weights[-1] = (W_enc_T.pow(2).sum(1) - inside).clamp_min(0).sqrt()
        self.started = True

    # -- proposing and choosing ---------------------------------------------------------------
    @torch.no_grad()
    def scores(self, xc: torch.Tensor, b_enc: torch.Tensor, scratch: kernels.Scratch) -> torch.Tensor:
        """[B, d_sae]: the sketch's pre-activations, in ``dtype``, written into ``scratch``. Each is
        optimistic by OPTIMISM times the typical size of the part the sketch leaves out (a token's
        and a latent's norms outside the basis, over the root of its dimension), so a latent whose
        encoder row lies outside the inputs' main directions is still proposed where it may fire."""
        out = scratch.get("sketch_scores", (xc.shape[0], self.weights.shape[1]), self.dtype, xc.device)
        inside = xc @ self.basis
        outside = (xc.pow(2).sum(1) - inside.pow(2).sum(1)).clamp_min(0).sqrt()
        outside *= OPTIMISM / (xc.shape[1] - self.rank) ** 0.5
        projected = torch.cat([inside, outside[:, None]], dim=1).to(self.dtype)
        return torch.addmm(b_enc.to(self.dtype), projected, self.weights, out=out)

    @torch.no_grad()
    def topk_codes(
        self,
        xc: torch.Tensor,
        W_enc_T: torch.Tensor,
        b_enc: torch.Tensor,
        k: int,
        dead: torch.Tensor | None,
        k_aux: int,
        scratch: kernels.Scratch,
    ) -> kernels.Codes:
        """``kernels.topk_codes``' result from the sketch: the top k among each token's ``pool``
        candidates, with exact values. AuxK scores the dead latents exactly while they are few,
        else takes the sketch's choice among them (with exact values); those AuxK found join the
        choice of the top k, as every latent does in the dense step."""
        scores = self.scores(xc, b_enc, scratch)
        candidates = kernels.top(scores, self.pool)[1]
        exact = kernels.exact_pre(candidates, xc, W_enc_T, b_enc)
        if dead is not None and k_aux > 0:
            dead_latents = dead.nonzero().flatten()
            if len(dead_latents) * EXACT_AUX_SHARE <= len(dead):
                # few dead: score them exactly, as the sketch is weakest where nothing fires
                aux_values, at = torch.addmm(b_enc[dead_latents], xc, W_enc_T[dead_latents].T).topk(k_aux, dim=-1)
                aux_indices = dead_latents[at]
            else:  # many (early in a wide run): that would be most of the dense GEMM again
                aux_indices = kernels.top(scores.masked_fill_(~dead, float("-inf")), k_aux)[1]
                aux_values = kernels.exact_pre(aux_indices, xc, W_enc_T, b_enc)
            if k_aux >= self.pool or k_aux == len(dead_latents):
                # every dead latent that can enter the top k is among AuxK's (its k_aux >= pool >= k
                # best, or all): the pool's dead ones are dropped and AuxK's join, each once
                exact = torch.cat([exact.masked_fill(dead[candidates], float("-inf")), aux_values], dim=1)
                candidates = torch.cat([candidates, aux_indices], dim=1)
            aux_values = aux_values.relu()
        else:
            aux_values, aux_indices = xc.new_zeros(xc.shape[0], 0), candidates.new_zeros(xc.shape[0], 0)
        values, at = exact.topk(k, dim=-1, sorted=False)
        return kernels.Codes(values.relu_(), candidates.gather(1, at), aux_values, aux_indices)

    # -- measuring ---------------------------------------------------------------------------
    @torch.no_grad()
    def recall(self, xc: torch.Tensor, W_enc_T: torch.Tensor, b_enc: torch.Tensor, k: int) -> float:
        """The fraction of the exact top k (by the dense GEMM, in fp32) among the candidates, over
        every rank's ``xc``."""
        exact = torch.addmm(b_enc, xc, W_enc_T.T).topk(k, dim=-1).indices
        candidates = self.scores(xc, b_enc, kernels.Scratch()).topk(self.pool, dim=-1).indices
        hit = torch.zeros_like(exact, dtype=torch.bool)
        for j in range(0, self.pool, 64):  # [B, k, 64] at a time
            hit |= (exact.unsqueeze(2) == candidates[:, None, j : j + 64]).any(2)
        counts = distributed.total(torch.stack([hit.sum(), hit.new_tensor(hit.numel(), dtype=torch.long)]).double())
        return float(counts[0] / counts[1])

    def adapt(self, recall: float) -> None:
        """Rebuild more often while ``recall`` (measured on the stalest step) is below the band,
        less often above it; every rank measures the same global recall, so all follow one period."""
        if recall < RECALL_LOW:
            self.period = max(1, self.period // 2)
        elif recall > RECALL_HIGH:
            self.period = min(REFRESH, self.period * 2)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        return {
            "sketch.basis": self.basis.cpu(),
            "sketch.weights": self.weights.cpu(),
            "sketch.covariance": self.covariance.cpu(),
            "sketch.started": torch.tensor([int(self.started)]),
            "sketch.period": torch.tensor([self.period]),
            "sketch.pool": torch.tensor([self.pool]),
        }

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in ("basis", "weights", "covariance"):
            getattr(self, name).copy_(tensors[f"sketch.{name}"])
        self.started = bool(tensors["sketch.started"].item())
        # a run saved before the period followed recall rebuilt every REFRESH steps
        self.period = int(tensors["sketch.period"].item()) if "sketch.period" in tensors else REFRESH
        if "sketch.pool" in tensors:  # older states hold none: the trainer sets the default of their day
            self.pool = int(tensors["sketch.pool"].item())
