"""Figures of the demo models: AUROC of SAE latents against the world's ground truth."""

from __future__ import annotations

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N along axis 0 with ties given their average rank (like scipy's rankdata)."""
    ranks = np.empty(x.shape, dtype=np.float64)
    for j in range(x.shape[1]):
        _, inverse, counts = np.unique(x[:, j], return_inverse=True, return_counts=True)
        top = np.cumsum(counts)
        ranks[:, j] = (top - (counts - 1) / 2)[inverse]
    return ranks


def auroc_per_column(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``scores`` [N, F] for the boolean labels ``positive`` [N]."""
    positive = positive.astype(bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = _average_ranks(scores)
    return (ranks[positive].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
