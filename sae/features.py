"""The feature index: per-latent statistics and top images over an image folder.

``<sae>/index/index.safetensors`` holds, per latent: token firing count, images fired on, sum
and max of activations, a histogram over log-spaced bins, the 16 images with the highest
image-level activation (max over tokens) and those activations; its safetensors metadata holds
the JSON facts (source list, folder, counts). It is written in one atomic replace after every
chunk, so an interrupted run resumes where it stopped and a reader never sees half an index.
Indexing again over a folder with more images adds only the new ones. The same file keeps the
running sums of ``sae.evidence.ImageEvidence`` (how each latent co-varies with the image
embedding), which text search uses beside the effect directions, and, per latent, the sum of
its class-token activations and of its image-level maxima: their ratio says whether the latent
lives on the class token or on the patches alone (``home_tokens``). Per picture it keeps the
SAE's explained share (``sae.coverage``), against which an opened picture is compared. Thumbnails of top images
are saved under ``index/thumbs``; a top image's patch heatmap is recomputed on demand (one
prefix pass), which is exact and keeps the index small for wide SAEs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from sae import atomic
from sae.backbone import Backbone
from sae.coverage import explained_share
from sae.errors import UserError
from sae.evidence import ImageEvidence
from sae.images import find_images, load_image
from sae.model import SparseAutoencoder

INDEX_DIR = "index"
CODES_PER_BATCH = 1 << 27  # dense codes [B, T, F] of one indexing batch: 512 MB of float32
INDEX_FILE = "index.safetensors"
TOP = 16
BINS = torch.logspace(-3, 3, 33)  # histogram edges of activation values
THUMB = 96
# A latent whose class-token activation averages under this share of its image-level maximum
# lives on the patches: edits leave its class token alone. On the demo SAE the cat latent is at
# 1% (it fires on the cat's patches) and the hat latent at about 100% (on the class token).
HOME_CLASS_SHARE = 0.1


def index_path(folder: str | Path) -> Path:
    """Where an SAE folder keeps its feature index (``sae-studio index`` makes it)."""
    return Path(folder) / INDEX_DIR / INDEX_FILE


def has_index(folder: str | Path) -> bool:
    return index_path(folder).is_file()


@dataclass
class FeatureIndex:
    sources: list[str]  # image paths relative to root
    root: str
    tokens: int
    count: torch.Tensor  # [F] token firings
    images: torch.Tensor  # [F] images with any firing
    total: torch.Tensor  # [F] sum of activations
    max: torch.Tensor  # [F]
    hist: torch.Tensor  # [F, 32]
    top_values: torch.Tensor  # [F, TOP] image-level activation, descending
    top_images: torch.Tensor  # [F, TOP] index into sources (-1: empty)
    evidence: ImageEvidence | None = None  # None: an index written before evidence was kept
    class_total: torch.Tensor | None = None  # [F] sum of class-token activations (None: an older index)
    peak_total: torch.Tensor | None = None  # [F] sum of image-level maxima
    centre: torch.Tensor | None = None  # [d] mean token of the first pictures indexed (sae.coverage)
    explained: torch.Tensor | None = None  # [N] each indexed picture's explained share (None: an older index)

    @classmethod
    def empty(cls, d_sae: int, root: str, embed_dim: int) -> FeatureIndex:
        z = torch.zeros(d_sae)
        return cls(
            [],
            root,
            0,
            z.clone(),
            z.clone(),
            z.clone(),
            z.clone(),
            torch.zeros(d_sae, len(BINS) - 1),
            torch.full((d_sae, TOP), -1.0),
            torch.full((d_sae, TOP), -1, dtype=torch.long),
            ImageEvidence.empty(d_sae, embed_dim),
            z.clone(),
            z.clone(),
            None,
            torch.zeros(0),
        )

    @property
    def frequency(self) -> torch.Tensor:
        """Share of tokens on which each latent fires."""
        return self.count / max(1, self.tokens)

    @property
    def mean(self) -> torch.Tensor:
        """Mean activation when firing."""
        return self.total / self.count.clamp_min(1)

    def typical_max(self, latent: int | None = None) -> torch.Tensor:
        """A slider unit per latent [F] (or of one latent [1]: a wide SAE's [F] takes a while): the
        median of its top image activations (robust to one outlier)."""
        v = (self.top_values if latent is None else self.top_values[latent : latent + 1]).clone()
        v[v < 0] = float("nan")
        med = v.nanmedian(dim=1).values
        return torch.nan_to_num(med, nan=0.0)

    def check_fits(self, d_sae: int, folder: str | Path) -> None:
        """One sentence when this index was made for an SAE of another width (a copied folder, or
        weights replaced beside their index)."""
        if len(self.top_values) != d_sae:
            raise UserError(
                f"{Path(folder) / INDEX_DIR} was made for an SAE with {len(self.top_values):,} latents, not this "
                f"one's {d_sae:,}; delete it and index again."
            )

    def home_tokens(self, latent: int) -> str:
        """The tokens an edit of ``latent`` should touch (``sae.steer.TOKENS``): ``"patches"`` when
        it hardly fires on the class token, else ``"all"``; ``"all"`` too when the index predates
        the class-token sums or the latent never fired."""
        if self.class_total is None or self.peak_total is None or self.peak_total[latent] <= 0:
            return "all"
        share = float(self.class_total[latent] / self.peak_total[latent])
        return "patches" if share < HOME_CLASS_SHARE else "all"

    def top(self, latent: int) -> list[tuple[str, float]]:
        return [
            (self.sources[int(i)], float(v))
            for i, v in zip(self.top_images[latent], self.top_values[latent], strict=True)
            if i >= 0
        ]

    # -- disk ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        tensors = {
            k: getattr(self, k).contiguous()
            for k in ("count", "images", "total", "max", "hist", "top_values", "top_images")
        }
        if self.evidence is not None:
            tensors |= self.evidence.tensors()
        if self.class_total is not None and self.peak_total is not None:
            tensors |= {"class_total": self.class_total.contiguous(), "peak_total": self.peak_total.contiguous()}
        if self.centre is not None and self.explained is not None:
            tensors |= {"centre": self.centre.contiguous(), "explained": self.explained.contiguous()}
        meta = {
            "format": "sae-studio-index",
            "version": "1",
            "facts": json.dumps({"sources": self.sources, "root": self.root, "tokens": self.tokens}),
        }
        with atomic.atomic_path(index_path(folder)) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, folder: str | Path) -> FeatureIndex:
        path = index_path(folder)
        if not path.is_file():
            raise UserError(
                f"{Path(folder)} has no feature index yet; run sae-studio index --sae {folder} --images DIR."
            )
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
            facts = json.loads(meta["facts"])
            evidence = ImageEvidence.from_tensors(t)
            explained = t.get("explained")
            if explained is not None and len(explained) != len(facts["sources"]):
                explained = None  # grown by a version that did not measure it
            if evidence is not None and int(evidence.n) != len(facts["sources"]):
                evidence = None  # grown by a version that did not keep it: it covers only part of the images
            return cls(
                facts["sources"],
                facts["root"],
                int(facts["tokens"]),
                t["count"],
                t["images"],
                t["total"],
                t["max"],
                t["hist"],
                t["top_values"],
                t["top_images"],
                evidence,
                t.get("class_total"),
                t.get("peak_total"),
                t.get("centre") if explained is not None else None,
                explained,
            )
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{path} is damaged ({e}); delete it and index again.") from e


def load_evidence(folder: str | Path) -> ImageEvidence | None:
    """The index's image evidence alone (``None`` without an index, or one that predates it)."""
    try:
        return FeatureIndex.load(folder).evidence
    except UserError:
        return None


def _save_thumb(folder: Path, i: int, image: Image.Image) -> None:
    path = folder / INDEX_DIR / "thumbs" / f"{i:07d}.png"
    if path.is_file():
        return
    thumb = image.copy()
    thumb.thumbnail((THUMB, THUMB))
    with atomic.atomic_path(path) as tmp:
        thumb.save(tmp, format="PNG")


def thumbnail_path(folder: str | Path, image_id: int) -> Path:
    return Path(folder) / INDEX_DIR / "thumbs" / f"{image_id:07d}.png"


@torch.inference_mode()
def build_index(
    sae_folder: str | Path,
    backbone: Backbone,
    sae: SparseAutoencoder,
    images: str | Path,
    batch_size: int = 32,
    chunk: int = 512,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FeatureIndex:
    """Index every image under ``images`` not indexed yet; saves after each ``chunk`` images."""
    sae_folder, images = Path(sae_folder), Path(images)
    paths = find_images(images)
    sources = [p.relative_to(images).as_posix() for p in paths]
    try:
        index = FeatureIndex.load(sae_folder)
        index.check_fits(sae.d_sae, sae_folder)
        if Path(index.root) != images.resolve():
            raise UserError(
                f"The index of {sae_folder} covers {index.root}, not {images}; delete {sae_folder / INDEX_DIR} to "
                f"index another folder."
            )
    except UserError as e:
        if "no feature index" not in str(e):
            raise
        index = FeatureIndex.empty(sae.d_sae, str(images.resolve()), backbone.embed_dim)
    if index.evidence is None and index.sources:
        tqdm.write(
            f"note: the index of {sae_folder} predates search evidence; delete {sae_folder / INDEX_DIR} and index "
            f"again for better text search"
        )
    if index.explained is None and index.sources:
        tqdm.write(
            f"note: the index of {sae_folder} predates coverage figures; delete {sae_folder / INDEX_DIR} and "
            "index again to compare pictures with the indexed ones"
        )
    if index.class_total is None and index.sources:
        tqdm.write(
            f"note: the index of {sae_folder} predates class-token sums; its latents' edits touch every token "
            f"until you delete {sae_folder / INDEX_DIR} and index again"
        )
    done = set(index.sources)
    todo = [(p, s) for p, s in zip(paths, sources, strict=True) if s not in done]
    positions = backbone.token_positions(sae.metadata.token_set)
    has_class = positions.start in (None, 0)  # a patches-only SAE never sees the class token
    tokens_kept = len(range(backbone.n_tokens)[positions])
    batch_size = max(1, min(batch_size, CODES_PER_BATCH // (tokens_kept * sae.d_sae)))  # a wide SAE's codes fit
    bar = tqdm(total=len(todo), unit="img", desc="index", disable=not progress)
    since_save = 0
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        pixels, ids, pil = [], [], []
        for path, source in part:
            try:
                im = load_image(path)
            except UserError as e:
                tqdm.write(f"warning: {e} Skipped.")
                continue
            pixels.append(backbone.preprocess(im))
            ids.append(len(index.sources))
            index.sources.append(source)
            pil.append(im)
        if pixels:
            full, sae_input = backbone.split(torch.stack(pixels).to(backbone.device))
            tokens = sae_input[:, positions].float()
            f = sae.encode(tokens)  # [B, T, F]
            if index.explained is not None:
                if index.centre is None:
                    index.centre = tokens.mean((0, 1)).cpu()
                index.explained = torch.cat([index.explained, explained_share(tokens, sae.decode(f), index.centre)])
            f = f.cpu()
            fired = f > 0
            index.tokens += f.shape[0] * f.shape[1]
            index.count += fired.sum((0, 1))
            index.images += fired.any(1).sum(0)
            index.total += f.sum((0, 1))
            img_max = f.amax(1)  # [B, F]
            if index.class_total is not None and index.peak_total is not None:
                if has_class:
                    index.class_total += f[:, 0].sum(0)
                index.peak_total += img_max.sum(0)
            if index.evidence is not None:
                index.evidence.add(img_max, backbone.suffix(full))
            index.max = torch.maximum(index.max, img_max.amax(0))
            vals = f[fired]
            lat = fired.nonzero()[:, 2]
            b = torch.bucketize(vals, BINS[1:-1])
            index.hist.index_put_((lat, b), torch.ones_like(vals), accumulate=True)
            cand_v = torch.cat([index.top_values, img_max.T], 1)
            cand_i = torch.cat([index.top_images, torch.tensor(ids).expand(sae.d_sae, -1)], 1)
            best = cand_v.topk(TOP, dim=1)
            index.top_values, index.top_images = best.values, cand_i.gather(1, best.indices)
            in_top = set(index.top_images[index.top_values > 0].tolist())
            for i, im in zip(ids, pil, strict=True):
                if i in in_top:
                    _save_thumb(sae_folder, i, im)
        bar.update(len(part))
        since_save += len(part)
        if on_progress:
            on_progress(start + len(part), len(todo))
        if since_save >= chunk:
            index.save(sae_folder)
            since_save = 0
            if should_stop and should_stop():
                break
    bar.close()
    index.save(sae_folder)
    return index
