"""Feature labels: automatic ones from the CLIP text tower, renames by people, and text search.

A latent's *effect direction* is the mean change of the final (normalised) image embedding when
its decoder row is added at layer L to a set of neutral images. Labelling ranks a vocabulary of
prompts by cosine with that direction through the CLIP text tower; search ranks latents by
cosine between a query's text embedding and their directions, plus a bonus when the query
matches the label, plus the image evidence of ``sae.evidence`` when the index keeps it (does the
latent fire on the indexed images CLIP matches to the query?). Both rankings compare *centred*
vectors (image-side directions less their mean, text-side ones less the vocabulary's mean):
CLIP's two sides each share a large common component (the "modality gap") that otherwise decides
the ranking.

``labels.json`` in the SAE folder::

    {"format": "sae-studio-labels", "version": 1,
     "labels": {"17": {"label": "cat", "source": "auto", "score": 0.41}, "18": {"label": "my hat", "source": "user"}}}
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from sae import atomic
from sae.backbone import Backbone
from sae.errors import UserError
from sae.evidence import ImageEvidence
from sae.features import FeatureIndex, load_evidence
from sae.model import LABELS_NAME, SparseAutoencoder

FORMAT = "sae-studio-labels"
MAX_LABEL = 200  # characters: a label is shown in lists and on sliders


# -- labels.json ---------------------------------------------------------------------------------


def read_label_entries(folder: str | Path) -> dict[int, dict]:
    path = Path(folder) / LABELS_NAME
    if not path.is_file():
        return {}
    try:
        raw = atomic.parse_json(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); delete it to relabel the SAE.") from e
    entries = raw.get("labels") if isinstance(raw, dict) else None
    out = {}
    for k, v in (entries if isinstance(entries, dict) else {}).items():
        if str(k).isdigit() and isinstance(v, dict) and isinstance(v.get("label"), str):
            out[int(k)] = v | {"label": v["label"][:MAX_LABEL]}  # a label is a name, not a document
    return out


def read_labels(folder: str | Path) -> dict[int, str]:
    return {k: v["label"] for k, v in read_label_entries(folder).items()}


def write_label_entries(folder: str | Path, entries: dict[int, dict]) -> None:
    atomic.write_json(
        Path(folder) / LABELS_NAME,
        {
            "format": FORMAT,
            "version": 1,
            "labels": {str(k): v for k, v in sorted(entries.items())},
        },
    )


def rename(folder: str | Path, latent: int, label: str) -> None:
    """A person's name for a latent; it outranks automatic labels and survives relabelling."""
    label = label.strip()
    if not label:
        raise UserError("A label cannot be empty.")
    entries = read_label_entries(folder)
    entries[latent] = {"label": label[:MAX_LABEL], "source": "user"}
    write_label_entries(folder, entries)


# -- effect directions ------------------------------------------------------------------------------


@torch.inference_mode()
def effect_directions(
    backbone: Backbone, sae: SparseAutoencoder, neutral_pixels: torch.Tensor, strengths: torch.Tensor, batch: int = 64
) -> torch.Tensor:
    """[d_sae, e] unit vectors: mean change of the normalised image embedding when each latent's
    decoder row, times its ``strengths`` (e.g. its typical max activation), is added at layer L
    to every token of the neutral images."""
    resid = backbone.prefix(neutral_pixels).float()  # [N, T, d]
    base = F.normalize(backbone.suffix(resid), dim=-1)  # [N, e]
    positions = backbone.token_positions(sae.metadata.token_set)
    # One [F, e] result written in place: a list of small per-batch results beside the batches'
    # larger temporaries fragments the heap, which at 163,840 latents kept 6 GB from the system.
    out = torch.empty(sae.d_sae, base.shape[-1])
    for start in range(0, sae.d_sae, batch):
        idx = torch.arange(start, min(sae.d_sae, start + batch))
        add = sae.W_dec[idx] / sae.input_scale * strengths[idx, None]  # [b, d] in the residual's scale
        r = resid[None].repeat(len(idx), 1, 1, 1)  # [b, N, T, d]
        r[:, :, positions] += add[:, None, None, :]
        e = F.normalize(backbone.suffix(r.flatten(0, 1)), dim=-1).view(len(idx), resid.shape[0], -1)
        out[start : start + len(idx)] = (e - base[None]).mean(1)
    return F.normalize(out, dim=-1, out=out)


@torch.inference_mode()
def text_directions(backbone: Backbone, prompts: Sequence[str], batch: int = 256) -> torch.Tensor:
    return F.normalize(
        torch.cat([backbone.encode_text(list(prompts[i : i + batch])) for i in range(0, len(prompts), batch)]), dim=-1
    )


# Weight of the image evidence (a correlation in [-1, 1]) beside the effect alignment (a cosine).
# The evidence is the CLIP-Dissect idea (Oikarinen & Weng, 2023: match a unit to the concept whose
# CLIP image-text scores its activations follow); the effect alignment says what the slider does
# and breaks ties among detectors. Rank of the best-AUROC latent on two demo SAEs (the one before
# the CLIP's tune stage / the one after), weight 0.5 -> 3: night 0 -> 0 / 17 -> 0, "a flower"
# 2 -> 0 / 7 -> 0, "by the sea" 35 -> 5 / 27 -> 1, "indoors" 1 -> 0 / 9 -> 3, car 0 / 1 -> 0; cat,
# dog, cowboy hat, desert, snow first at both. At 0.5 the newer SAE's night detectors (14
# latents that fire on every night scene) ranked below four partial "night" latents.
EVIDENCE_WEIGHT = 3.0


@dataclass
class FeatureDirections:
    """What search compares a query with: every latent's effect direction, the mean of the label
    vocabulary's text directions (``None`` in folders labelled before it was kept: their search
    compares uncentred vectors), and the index's image evidence (``None`` if it has none)."""

    effects: torch.Tensor  # [d_sae, e], unit rows
    text_centre: torch.Tensor | None  # [e]
    evidence: ImageEvidence | None = None

    @cached_property
    def centred(self) -> torch.Tensor:
        """[d_sae, e]: the effects centred on their mean and renormalised, once (a query only multiplies)."""
        if self.text_centre is None:
            return self.effects
        return F.normalize(self.effects - self.effects.mean(0), dim=-1)

    def alignment(self, query_dirs: torch.Tensor) -> torch.Tensor:
        """Cosine between each latent's centred effect and each centred text direction: [d_sae]
        for one direction [e], [n, d_sae] for [n, e]."""
        if self.text_centre is not None:
            query_dirs = F.normalize(query_dirs - self.text_centre, dim=-1)
        return query_dirs @ self.centred.T

    def match(self, query_dir: torch.Tensor, evidence_weight: float | None = None) -> torch.Tensor:
        """[F]: how well each latent matches a text direction [e] ([F, n] for [n, e]): the effect
        alignment plus the weighted image evidence when there is some (what search ranks by, and
        labels choose by)."""
        weight = EVIDENCE_WEIGHT if evidence_weight is None else evidence_weight
        score = self.alignment(query_dir)
        score = score.T if score.dim() == 2 else score
        if self.evidence is not None and weight:
            score = score + weight * self.evidence.correlation(query_dir, self.text_centre)
        return score

    @cached_property
    def _search_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """([F, e] or [F, 2e] half precision, Cov(e) or None): the centred effects beside each
        latent's covariance with the image embedding over its deviation, so that a query is one
        matrix-vector product (at 163,840 latents reading the table is the query's whole cost)."""
        if self.evidence is None:
            return self.centred.half(), None
        standardised, cov_e = self.evidence.standardised()
        return torch.cat([self.centred, standardised], 1).half(), cov_e

    def search_scores(self, query_dir: torch.Tensor, evidence_weight: float | None = None) -> torch.Tensor:
        """[F]: ``match`` for one query direction [e], from the half-precision table (agrees with
        ``match`` to about 1e-3)."""
        weight = EVIDENCE_WEIGHT if evidence_weight is None else evidence_weight
        table, cov_e = self._search_table
        q = query_dir.float().cpu()
        u = q if self.text_centre is None else F.normalize(q - self.text_centre, dim=-1)  # as alignment
        if cov_e is None:
            return (table @ u.half()).float()
        v = F.normalize(q if self.text_centre is None else q - self.text_centre, dim=-1).double()  # as correlation
        std_s = float((v @ cov_e @ v).clamp_min(0).sqrt())
        k = weight / std_s if weight and std_s > 1e-6 else 0.0
        return (table @ torch.cat([u, k * v.float()]).half()).float()


def auto_label(
    directions: torch.Tensor, vocabulary: Sequence[str], vocab_dirs: torch.Tensor, evidence: ImageEvidence | None = None
) -> dict[int, dict]:
    """Best vocabulary entry per latent by the score search ranks by: cosine with its effect
    direction, plus the weighted image evidence (how its activation follows the indexed images'
    CLIP match to the entry) when the index has it.

    Both sets are centred first: CLIP's image-side and text-side vectors each share a large
    common component (the "modality gap"), which otherwise pulls most latents to the few prompts
    nearest the image cloud's centre (on the demo SAE: 'fish' was never chosen, 'ball' 290 times).
    The evidence is what makes a label say what the latent fires on: on the demo SAE, of the
    latents labelled with an object kind by their effect alone, the judge saw that kind in at least
    half of the top 8 images of 18%; with the evidence, 78%."""
    features = FeatureDirections(directions, vocab_dirs.mean(0), evidence)
    score = torch.full((len(directions),), -torch.inf)
    best = torch.zeros(len(directions), dtype=torch.long)
    for start in range(0, len(vocab_dirs), 64):  # [F, 64] at a time: a wide SAE's [F, V] would not fit
        chunk_score, chunk_best = features.match(vocab_dirs[start : start + 64]).max(1)
        better = chunk_score > score
        score, best = torch.where(better, chunk_score, score), torch.where(better, chunk_best + start, best)
    return {
        i: {"label": vocabulary[int(b)], "source": "auto", "score": round(float(s), 4)}
        for i, (s, b) in enumerate(zip(score, best, strict=True))
    }


def merge_labels(auto: dict[int, dict], existing: dict[int, dict]) -> dict[int, dict]:
    """New automatic labels, keeping every label a person gave."""
    merged = dict(auto)
    merged.update({k: v for k, v in existing.items() if v.get("source") == "user"})
    return merged


class SearchHit(NamedTuple):
    latent: int
    score: float
    label: str


def label_groups(labels: dict[int, str]) -> dict[str, list[int]]:
    """Latents by lower-cased label: a wide SAE has far fewer distinct labels than latents, so a
    query compares itself with each label once (``search`` takes this, built once per folder)."""
    groups: dict[str, list[int]] = {}
    for latent, label in labels.items():
        if words := label.strip().lower():
            groups.setdefault(words, []).append(latent)
    return groups


def search(
    query: str,
    query_dir: torch.Tensor,
    directions: FeatureDirections,
    labels: dict[int, str],
    top: int = 20,
    label_bonus: float = 0.25,
    evidence_weight: float = EVIDENCE_WEIGHT,
    named: Collection[int] = (),
    groups: dict[str, list[int]] | None = None,
) -> list[SearchHit]:
    """Latents ranked by cosine(query text, effect direction), both centred, + the weighted image
    evidence when the index has it, + a bonus when the label matches. A latent in ``named`` (its
    label given by a person) whose label is the query comes first: the person said what it is."""
    q = query.strip().lower()
    score = directions.search_scores(query_dir, evidence_weight)  # [F]
    ceiling = 2 + 2 * evidence_weight  # more than any two scores differ by without a label
    if q:
        for words, latents in (label_groups(labels) if groups is None else groups).items():
            if q == words:
                ids = torch.tensor(latents)
                score[ids] += label_bonus
                for latent in named:
                    if labels.get(latent, "").strip().lower() == q:
                        score[latent] += ceiling
            elif q in words or words in q:
                score[torch.tensor(latents)] += label_bonus / 2
    order = torch.topk(score, min(top, len(score))).indices
    return [SearchHit(int(i), float(score[i]), labels.get(int(i), f"latent {int(i)}")) for i in order]


# -- the labelling run ------------------------------------------------------------------------------

DIRECTIONS_FILE = "directions.safetensors"


def save_directions(folder: str | Path, directions: FeatureDirections) -> None:
    from safetensors.torch import save_file

    tensors = {"directions": directions.effects.contiguous()}
    if directions.text_centre is not None:
        tensors["text_centre"] = directions.text_centre.contiguous()
    with atomic.atomic_path(Path(folder) / "index" / DIRECTIONS_FILE) as tmp:
        save_file(tensors, str(tmp))


def load_directions(folder: str | Path, index: FeatureIndex | None = None) -> FeatureDirections:
    """The folder's effect directions, with the image evidence of ``index`` when given (a caller
    that holds the index already), else of the index read from the folder."""
    from safetensors.torch import load_file

    path = Path(folder) / "index" / DIRECTIONS_FILE
    if not path.is_file():
        raise UserError(
            f"{Path(folder)} has no feature directions yet; run sae-studio index --sae {folder} --images DIR."
        )
    try:
        t = load_file(str(path))
        directions, centre = t["directions"], t.get("text_centre")
        if directions.ndim != 2 or (centre is not None and centre.shape != directions.shape[1:]):
            raise ValueError(f"directions of shape {tuple(directions.shape)}")
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise UserError(f"{path} is damaged ({e}); delete it and index again.") from e
    if index is not None and len(directions) != len(index.top_values):
        raise UserError(f"{path} holds {len(directions)} latents, not the index's; delete it and index again.")
    evidence = index.evidence if index is not None else load_evidence(folder)
    return FeatureDirections(directions, centre, evidence)


def label_sae(
    folder: str | Path,
    backbone: Backbone,
    sae: SparseAutoencoder,
    strengths: torch.Tensor,
    neutral_pixels: torch.Tensor,
    vocabulary: Sequence[tuple[str, str]],
    evidence: ImageEvidence | None = None,
) -> dict[int, dict]:
    """Compute effect directions, label every latent from ``vocabulary`` (with the index's image
    ``evidence`` when given), keep renames; saves both."""
    directions = effect_directions(backbone, sae, neutral_pixels, strengths)
    words = [label for label, _ in vocabulary]
    vocab_dirs = text_directions(backbone, [prompt for _, prompt in vocabulary])
    save_directions(folder, FeatureDirections(directions, vocab_dirs.mean(0)))
    entries = merge_labels(auto_label(directions, words, vocab_dirs, evidence), read_label_entries(folder))
    write_label_entries(folder, entries)
    return entries
