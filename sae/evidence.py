"""Image evidence for search: how each latent's activation co-varies with the image embedding.

Text search through effect directions alone asks "does adding this latent move the image toward
the query?". For a broad concept that question has many near-equal answers: on the demo SAE the
night sky's corner latents move an image as much toward "night" as the latent that fires on
every night sky, and rank above it. Image evidence asks the question a person checks with the
top-images view: over the indexed images, does the latent fire where CLIP sees the query?

For each latent ``j`` and a query text direction ``q`` (centred by the label vocabulary's mean,
as ``FeatureDirections.alignment`` does), the evidence is the Pearson correlation over the
indexed images between the latent's image-level activation ``a_j`` (max over tokens) and the
image's zero-shot score ``s = e . q`` (``e`` the normalised image embedding). Both moments reduce to
running sums that do not depend on the query::

    cov(a_j, s) = (E[a_j e] - E[a_j] E[e]) . q        var(s) = q^T Cov(e) q

so the index keeps ``sum a``, ``sum a^2``, ``sum e``, ``sum e e^T`` and ``sum a e^T`` (``[F, e]``, the
size of the effect directions), grows them image by image, and a query costs one matrix-vector
product. The sums are float32, as the effect directions are (a wide SAE on a large encoder has
up to hundreds of thousands of latents): the small sums of a batch are formed in float64 before
they are added, the [F, e] one in place, and a query's moments are formed in float64 from the
[F]-sized products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KEYS = ("n", "code_sum", "code_sq", "embed_sum", "embed_outer", "code_embed")


@dataclass
class ImageEvidence:
    n: torch.Tensor  # [] images seen
    code_sum: torch.Tensor  # [F] sum of image-level activations
    code_sq: torch.Tensor  # [F] sum of their squares
    embed_sum: torch.Tensor  # [e] sum of normalised image embeddings
    embed_outer: torch.Tensor  # [e, e] sum of e e^T
    code_embed: torch.Tensor  # [F, e] sum of a e^T

    @classmethod
    def empty(cls, d_sae: int, embed_dim: int) -> ImageEvidence:
        z = dict(dtype=torch.float32)
        return cls(
            torch.zeros((), **z),
            torch.zeros(d_sae, **z),
            torch.zeros(d_sae, **z),
            torch.zeros(embed_dim, **z),
            torch.zeros(embed_dim, embed_dim, **z),
            torch.zeros(d_sae, embed_dim, **z),
        )

    def add(self, image_codes: torch.Tensor, embeddings: torch.Tensor) -> None:
        """``image_codes`` [B, F] (max over tokens), ``embeddings`` [B, e] (unnormalised is fine)."""
        a = image_codes.double().cpu()
        e = F.normalize(embeddings.double().cpu(), dim=-1)
        self.n += a.shape[0]
        self.code_sum += a.sum(0).float()
        self.code_sq += (a * a).sum(0).float()
        self.embed_sum += e.sum(0).float()
        self.embed_outer += (e.T @ e).float()
        self.code_embed.addmm_(a.T.float(), e.float())  # [F, e] in place: a wide SAE's is the size of its decoder

    def correlation(self, query_dir: torch.Tensor, text_centre: torch.Tensor | None) -> torch.Tensor:
        """[F] for one query direction [e] ([F, n] for [n, e]): Pearson correlation of each latent's
        image-level activation with the images' score against the query (0 for a latent that never
        varies, or with < 2 images)."""
        q = query_dir.double().cpu()
        one = q.dim() == 1
        q = q[None] if one else q  # [n, e]
        if float(self.n) < 2:
            out = torch.zeros(self.code_sum.shape[0], q.shape[0])
            return out[:, 0] if one else out
        if text_centre is not None:
            q = q - text_centre.double().cpu()
        q = F.normalize(q, dim=-1)
        n = float(self.n)
        mean_a, mean_e = self.code_sum.double() / n, self.embed_sum.double() / n
        cov = (self.code_embed @ q.float().T).double() / n - mean_a[:, None] * (q @ mean_e)[None]  # [F, n]
        var_a = (self.code_sq.double() / n - mean_a**2).clamp_min(0)
        var_s = ((q @ (self.embed_outer.double() / n - torch.outer(mean_e, mean_e))) * q).sum(-1)  # [n]
        denom = (var_a[:, None] * var_s.clamp_min(0)[None]).sqrt()
        out = torch.where(denom > 1e-12, cov / denom.clamp_min(1e-12), torch.zeros_like(cov)).float()
        return out[:, 0] if one else out

    def standardised(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([F, e] Cov(a_j, e) / std(a_j), [e, e] Cov(e)): ``correlation`` for a unit query q is
        (first @ q) / sqrt(q Cov(e) q), the form a search reads in one product (rows of latents
        that never vary are zero, as their correlation is)."""
        n = max(float(self.n), 1.0)
        mean_a, mean_e = self.code_sum.double() / n, self.embed_sum.double() / n
        std_a = (self.code_sq.double() / n - mean_a**2).clamp_min(0).sqrt()
        cov = self.code_embed / n - (mean_a[:, None] * mean_e[None]).float()  # [F, e]
        scale = torch.where(std_a > 1e-6, 1 / std_a.clamp_min(1e-6), torch.zeros_like(std_a)).float()
        if float(self.n) < 2:
            scale.zero_()
        return cov * scale[:, None], self.embed_outer.double() / n - torch.outer(mean_e, mean_e)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"evidence.{k}": getattr(self, k).contiguous() for k in KEYS}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> ImageEvidence | None:
        """``None`` for an index written before evidence was kept."""
        if not all(f"evidence.{k}" in t for k in KEYS):
            return None
        return cls(**{k: t[f"evidence.{k}"].float() for k in KEYS})
