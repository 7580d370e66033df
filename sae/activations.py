"""Activation store: residuals at layer L written to fixed-size shards with a manifest.

Layout of an activations folder::

    manifest.json        what made the shards (model id + fingerprint, layer, token set, d,
                         dtype) and what they hold (per shard: file, rows, image range)
    shard-00000.npy      [shard_images * tokens_per_image, d] float16 or float32

Every shard and every manifest update is written atomically, and the manifest is written
after its shard, so an interrupted extraction resumes at the first image of the first
missing shard. ``ActivationStore.batches`` streams shuffled batches with memory bounded by a
buffer of a few hundred MB (not the store's size), as a pure function of (seed, batch index)
so training can resume at any batch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sae import atomic, distributed
from sae.backbone import TOKEN_SETS, Backbone
from sae.errors import UserError
from sae.images import find_images, load_image

MANIFEST_NAME = "manifest.json"
FORMAT = "sae-studio-activations"
VERSION = 1
DTYPES = {"fp16": np.float16, "fp32": np.float32}


@dataclass
class ShardInfo:
    file: str
    rows: int
    first_image: int  # index into manifest["sources"]
    end_image: int  # one past the last image index


@dataclass
class Manifest:
    model: str
    fingerprint: str
    layer: int
    token_set: str
    d: int
    dtype: str
    tokens_per_image: int
    shard_images: int
    sources: list[str]
    images_root: str = ""
    shards: list[ShardInfo] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    complete: bool = False

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def checked(self) -> Manifest:
        """Itself, once every field holds its kind of value (ValueError naming the first that does not)."""
        counts = {"layer": self.layer} | {f"shards[{i}].rows": s.rows for i, s in enumerate(self.shards)}
        sizes = {"d": self.d, "tokens_per_image": self.tokens_per_image}  # a shard of skipped images has 0 rows
        for name, value in (counts | sizes).items():
            if not isinstance(value, int) or isinstance(value, bool) or (name in sizes and value < 1):
                raise ValueError(f"{name} is {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype is {self.dtype!r}")
        if self.token_set not in TOKEN_SETS:
            raise ValueError(f"token_set is {self.token_set!r}")
        if not all(isinstance(s.file, str) for s in self.shards):
            raise ValueError("a shard's file is not a name")
        return self

    @property
    def next_image(self) -> int:
        return self.shards[-1].end_image if self.shards else 0

    def to_json(self) -> dict:
        d = {"format": FORMAT, "version": VERSION, **self.__dict__}
        d["shards"] = [s.__dict__ for s in self.shards]
        d["rows"] = self.rows
        return d

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise UserError(
                f"{folder} has no {MANIFEST_NAME}; it is not an activations folder (make one with sae-studio extract)."
            )
        try:
            d = atomic.parse_json(path.read_text())
            if d.get("format") != FORMAT:
                raise ValueError(f"format is {d.get('format')!r}")
            if int(d.get("version", 0)) > VERSION:
                raise UserError(
                    f"{path} was written by a newer sae-studio (version {d['version']}); upgrade to read it."
                )
            fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
            fields["shards"] = [ShardInfo(**s) for s in d.get("shards", [])]
            return cls(**fields).checked()
        except UserError:
            raise
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise UserError(
                f"{path} is not a valid activations manifest ({e}); extract again into a new folder."
            ) from e


def _write_shard(path: Path, rows: np.ndarray) -> None:
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, rows, allow_pickle=False)


def extract(
    backbone: Backbone,
    images: str | Path,
    out: str | Path,
    token_set: str = "all",
    dtype: str = "fp16",
    shard_mb: float = 64.0,
    batch_size: int = 32,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Manifest:
    """Run ``backbone.prefix`` over every image under ``images`` and write shards to ``out``.

    Resumes when ``out`` already holds a manifest from the same model, layer and image list.
    ``on_progress(done, total)`` is called after each batch; ``should_stop()`` returning True
    stops after the current shard is safe on disk (a GUI's cancel).
    """
    if token_set not in TOKEN_SETS:
        raise UserError(f"Token set '{token_set}' is unknown; use one of {', '.join(TOKEN_SETS)}.")
    if dtype not in DTYPES:
        raise UserError(f"Shard dtype '{dtype}' is unknown; use fp16 or fp32.")
    images, out = Path(images), Path(out)
    paths = find_images(images)
    sources = [p.relative_to(images).as_posix() for p in paths]
    positions = backbone.token_positions(token_set)
    tokens_per_image = len(range(backbone.n_tokens)[positions])
    row_bytes = tokens_per_image * backbone.width * np.dtype(DTYPES[dtype]).itemsize
    shard_images = max(1, int(shard_mb * 2**20) // row_bytes)

    main = distributed.is_main()
    out.mkdir(parents=True, exist_ok=True)
    if main:
        atomic.recover_dir(out / MANIFEST_NAME)  # clears stale temporaries of a killed run
        for stale in out.glob(".tmp-*"):
            stale.unlink(missing_ok=True)
    fresh = Manifest(
        model=backbone.model_id,
        fingerprint=backbone.fingerprint,
        layer=backbone.layer,
        token_set=token_set,
        d=backbone.width,
        dtype=dtype,
        tokens_per_image=tokens_per_image,
        shard_images=shard_images,
        sources=sources,
        images_root=str(images.resolve()),
    )
    if (out / MANIFEST_NAME).exists():
        manifest = Manifest.read(out)
        for key in ("fingerprint", "layer", "token_set", "d", "dtype"):
            if getattr(manifest, key) != getattr(fresh, key):
                raise UserError(
                    f"{out} holds activations with {key}={getattr(manifest, key)!r}, not "
                    f"{getattr(fresh, key)!r}; extract into a new folder or delete this one."
                )
        if manifest.sources != sources:
            raise UserError(
                f"{out} was extracted from a different list of images than {images} holds now; "
                "extract into a new folder."
            )
        if manifest.complete:
            return manifest
    else:
        manifest = fresh
        distributed.barrier()  # every rank has looked before rank 0 writes
        if main:
            atomic.write_json(out / MANIFEST_NAME, manifest.to_json())
    distributed.barrier()
    if distributed.active() or any(out.glob("partial-*.json")):
        return _extract_by_shard(backbone, paths, sources, positions, out, manifest, batch_size, progress, should_stop)

    total = len(paths)
    bar = tqdm(total=total, initial=manifest.next_image, unit="img", desc="extract", disable=not progress)
    shard_rows: list[np.ndarray] = []
    shard_first = manifest.next_image
    skipped_here: list[dict[str, str]] = []

    def flush(end_image: int) -> None:
        nonlocal shard_rows, shard_first, skipped_here
        name = f"shard-{len(manifest.shards):05d}.npy"
        rows = np.concatenate(shard_rows) if shard_rows else np.zeros((0, backbone.width), DTYPES[dtype])
        _write_shard(out / name, rows)
        manifest.shards.append(ShardInfo(name, int(rows.shape[0]), shard_first, end_image))
        manifest.skipped.extend(skipped_here)
        atomic.write_json(out / MANIFEST_NAME, manifest.to_json())
        shard_rows, shard_first, skipped_here = [], end_image, []

    i = manifest.next_image
    while i < total:
        shard_end = min(total, shard_first + shard_images)
        batch_end = min(shard_end, i + batch_size)
        rows = encode_images(backbone, paths, sources, range(i, batch_end), positions, dtype, skipped_here)
        if rows is not None:
            shard_rows.append(rows)
        bar.update(batch_end - i)
        i = batch_end
        if on_progress:
            on_progress(i, total)
        if i == shard_end:
            flush(shard_end)
            if should_stop and should_stop() and i < total:
                bar.close()
                return manifest
    bar.close()
    manifest.complete = True
    atomic.write_json(out / MANIFEST_NAME, manifest.to_json())
    return manifest


def encode_images(
    backbone: Backbone,
    paths: list[Path],
    sources: list[str],
    which: range,
    positions,
    dtype: str,
    skipped: list[dict[str, str]],
) -> np.ndarray | None:
    """Rows [n * tokens, d] of the images ``which`` that decode; the others go to ``skipped``."""
    pixels = []
    for j in which:
        try:
            pixels.append(backbone.preprocess(load_image(paths[j])))
        except UserError as e:
            tqdm.write(f"warning: {e} Skipped.", file=sys.stderr)
            skipped.append({"file": sources[j], "reason": str(e)})
    if not pixels:
        return None
    with torch.inference_mode():
        resid = backbone.split(torch.stack(pixels).to(backbone.device))[1][:, positions]  # the SAE's input
    rows = resid.reshape(-1, backbone.width).float().cpu().numpy()
    if not np.isfinite(rows).all():
        raise UserError(f"{backbone.model_id} gives NaN or infinite activations at layer {backbone.layer}.")
    with np.errstate(over="ignore"):
        out = rows.astype(DTYPES[dtype])
    if not np.isfinite(out).all():  # a residual stream's outlier dimensions can pass fp16's 65,504
        raise UserError(
            f"{backbone.model_id}'s activations at layer {backbone.layer} reach {np.abs(rows).max():,.0f}, beyond "
            f"{dtype}'s range; extract with --dtype fp32."
        )
    return out


def _extract_by_shard(
    backbone: Backbone,
    paths: list[Path],
    sources: list[str],
    positions,
    out: Path,
    manifest: Manifest,
    batch_size: int,
    progress: bool,
    should_stop,
) -> Manifest:
    """Extraction split across ``torchrun`` ranks: shard c (images c*S to (c+1)*S) belongs to rank
    c mod world. Each rank records its finished shards in ``partial-RANK.json``; rank 0 merges
    them into the manifest at the end. A stopped run resumes on any number of ranks (or alone)."""
    rank, world = distributed.rank(), distributed.world()
    size = manifest.shard_images
    n_shards = -(-len(paths) // size)
    done: dict[str, ShardInfo] = {s.file: s for s in manifest.shards}
    skipped = list(manifest.skipped)
    for part in sorted(out.glob("partial-*.json")):
        d = json.loads(part.read_text())
        done.update({s["file"]: ShardInfo(**s) for s in d["shards"]})
        skipped += d["skipped"]
    mine_file = out / f"partial-{rank}-of-{world}.json"
    mine = json.loads(mine_file.read_text()) if mine_file.is_file() else {"shards": [], "skipped": []}
    todo = [c for c in range(n_shards) if c % world == rank and f"shard-{c:05d}.npy" not in done]
    bar = tqdm(total=len(todo), unit="shard", desc=f"extract (rank {rank} of {world})", disable=not progress)
    for c in todo:
        first, end = c * size, min(len(paths), (c + 1) * size)
        rows, here = [], []
        for i in range(first, end, batch_size):
            batch = encode_images(
                backbone, paths, sources, range(i, min(end, i + batch_size)), positions, manifest.dtype, here
            )
            if batch is not None:
                rows.append(batch)
        name = f"shard-{c:05d}.npy"
        block = np.concatenate(rows) if rows else np.zeros((0, backbone.width), DTYPES[manifest.dtype])
        _write_shard(out / name, block)
        mine["shards"].append(ShardInfo(name, int(block.shape[0]), first, end).__dict__)
        mine["skipped"] += here
        atomic.write_json(mine_file, mine)
        bar.update(1)
        if should_stop and should_stop():
            break
    bar.close()
    distributed.barrier()
    if distributed.is_main():
        for part in sorted(out.glob("partial-*.json")):
            d = json.loads(part.read_text())
            done.update({s["file"]: ShardInfo(**s) for s in d["shards"]})
            skipped += [x for x in d["skipped"] if x not in skipped]
        manifest.shards = sorted(done.values(), key=lambda s: s.first_image)
        manifest.skipped = skipped
        manifest.complete = len(manifest.shards) == n_shards
        atomic.write_json(out / MANIFEST_NAME, manifest.to_json())  # the manifest first, then the partials go
        if manifest.complete:
            for part in out.glob("partial-*.json"):
                part.unlink()
    distributed.barrier()
    return Manifest.read(out)


class ActivationStore:
    """Read-only view of an activations folder: shards by memory map, shuffled batch streams."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = Manifest.read(self.folder)
        if not self.manifest.shards or self.manifest.rows == 0:
            raise UserError(f"{self.folder} holds no activations yet; run sae-studio extract to completion first.")
        for s in self.manifest.shards:
            if not (self.folder / s.file).is_file():
                raise UserError(f"{self.folder / s.file} is missing; the activations folder is damaged, extract again.")

    @property
    def d(self) -> int:
        return self.manifest.d

    @property
    def rows(self) -> int:
        return self.manifest.rows

    def shard(self, i: int) -> np.ndarray:
        """Shard ``i`` as a read-only memory map [rows, d]."""
        path = self.folder / self.manifest.shards[i].file
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path} is not a readable shard ({e}); extract again into a new folder.") from e
        if arr.ndim != 2 or arr.shape[1] != self.d or arr.shape[0] != self.manifest.shards[i].rows:
            raise UserError(f"{path} has shape {arr.shape}, not what the manifest says; extract again.")
        return arr

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` rows drawn uniformly (without replacement) from the whole store, as fp32."""
        rng = np.random.default_rng([seed, 7])
        n = min(n, self.rows)
        picks = np.sort(rng.choice(self.rows, size=n, replace=False))
        bounds = np.cumsum([0] + [s.rows for s in self.manifest.shards])
        out = []
        for i in range(len(self.manifest.shards)):
            sel = picks[(picks >= bounds[i]) & (picks < bounds[i + 1])] - bounds[i]
            if len(sel):
                out.append(self._check_finite(np.asarray(self.shard(i)[sel], dtype=np.float32), i))
        return torch.from_numpy(np.concatenate(out))

    def _check_finite(self, rows: np.ndarray, i: int) -> np.ndarray:
        """``rows`` of shard ``i``; one sentence when they hold NaN or an infinity, which would turn
        every weight the trainer touches into NaN."""
        if not np.isfinite(rows).all():
            raise UserError(
                f"{self.folder / self.manifest.shards[i].file} holds NaN or infinite activations; extract again "
                "(with --dtype fp32 if the encoder's values pass fp16's range)."
            )
        return rows

    def batches(
        self, batch_size: int, seed: int, start_batch: int = 0, buffer_mb: float = 512.0
    ) -> Iterator[torch.Tensor]:
        """Endless stream of shuffled fp32 batches [batch_size, d], batch ``start_batch`` first.

        Epoch e visits the shards in a seeded order, a buffer of about ``buffer_mb`` (whole
        shards) at a time; the rows of each buffer are shuffled together. The buffer stays in the
        shards' own dtype and only each batch becomes fp32, so memory is bounded by the buffer,
        not the store (``bench/store_scale.py``). The stream is a pure function of ``seed`` and
        ``buffer_mb``, so resuming at batch b yields exactly what an uninterrupted run yields.
        """
        sizes = [s.rows for s in self.manifest.shards]
        per_epoch = sum(sizes)
        row_bytes = self.d * np.dtype(DTYPES[self.manifest.dtype]).itemsize
        buffer_rows = max(batch_size, int(buffer_mb * 2**20) // row_bytes)
        epoch, offset = divmod(start_batch * batch_size, per_epoch)
        carry = np.zeros((0, self.d), np.float32)
        while True:
            groups: list[list[int]] = [[]]
            filled = 0
            for i in np.random.default_rng([seed, epoch]).permutation(len(sizes)):
                if filled >= buffer_rows:
                    groups.append([])
                    filled = 0
                groups[-1].append(int(i))
                filled += sizes[i]
            for gi, group in enumerate(groups):
                group_rows = sum(sizes[i] for i in group)
                if offset >= group_rows:
                    offset -= group_rows
                    continue
                buf = None  # let the previous buffer go before the next one is read
                buf = np.empty((group_rows, self.d), DTYPES[self.manifest.dtype])
                at = 0
                for i in group:  # one shard's pages mapped at a time
                    shard = self.shard(i)
                    buf[at : at + len(shard)] = shard
                    self._check_finite(buf[at : at + len(shard)], i)
                    at += len(shard)
                    del shard
                perm = np.random.default_rng([seed, epoch, gi]).permutation(len(buf))[offset:]
                offset = 0
                start = 0
                if len(carry):
                    start = min(batch_size - len(carry), len(perm))
                    carry = np.concatenate([carry, buf[perm[:start]].astype(np.float32)])
                    if len(carry) < batch_size:
                        continue
                    yield torch.from_numpy(carry)
                    carry = np.zeros((0, self.d), np.float32)
                stop = start + (len(perm) - start) // batch_size * batch_size
                for b in range(start, stop, batch_size):
                    yield torch.from_numpy(buf[perm[b : b + batch_size]].astype(np.float32))
                carry = buf[perm[stop:]].astype(np.float32)
            epoch += 1
