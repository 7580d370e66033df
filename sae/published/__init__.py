"""SAEs the field published as torch pickles, read once and safely, then kept as project SAEs.

Pickles are read only through ``sae.published.pickles`` (torch's weights-only loader, on a torch
with its CVE fixes). Nothing runs a repository's own ``model.py`` or loader, and
``sae-studio import`` converts the file once into safetensors (SAELens' layout), so nothing reads
the pickle again. One module per layout: ``daujotas`` (the Kandinsky 2.2 embedding SAE),
``prisma``, ``saev``, ``msae``; ``SparseAutoencoder``'s ``fold_*`` methods write their encode formulas
into sae-studio's one map.
"""

from __future__ import annotations

from pathlib import Path

from sae.errors import UserError
from sae.published import daujotas, msae, prisma, saev
from sae.published.layout import Published
from sae.published.pickles import read_tensors, safe_load, tensor_dict

__all__ = ["Published", "find_pickle", "load_published", "read_tensors"]

PICKLE_SUFFIXES = (".pth", ".pt")


def find_pickle(source: str | Path) -> Path | None:
    """The one pickle file ``source`` is or holds (None when it holds none)."""
    source = Path(source)
    if source.is_file():
        return source if source.suffix in PICKLE_SUFFIXES else None
    found = sorted(p for p in source.glob("*") if p.suffix in PICKLE_SUFFIXES) if source.is_dir() else []
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:3])
        raise UserError(f"{source} holds several pickles ({names}); name the one to import.")
    return found[0] if found else None


def load_published(source: str | Path, layer: int | None = None) -> Published:
    """The project SAE a published file holds, or one sentence naming what it is not."""
    path = find_pickle(source)
    published = _read(source, path, layer)
    published.sae.metadata.imported.update(layout=published.layout, file=path.name)
    return published


def _read(source: str | Path, path: Path | None, layer: int | None) -> Published:
    if path is None:
        raise UserError(f"{source} holds no .pth or .pt file of a published SAE.")
    config = path.parent / "config.json"
    if config.is_file():
        return Published(prisma.LAYOUT, prisma.read_prisma(path, config, layer))
    if (header := saev.read_header(path)) is not None:
        return saev.read_saev(path, *header, layer)
    obj = safe_load(path)
    if msae.is_msae(obj):
        return msae.read_msae(path, obj, layer)
    t = tensor_dict(obj, path)
    if daujotas.is_daujotas(t):
        return Published(daujotas.LAYOUT, daujotas.read_daujotas(path, t, layer))
    raise UserError(
        f"{path} is not a published SAE layout sae-studio knows (its tensors: {', '.join(list(t)[:6])}); it reads "
        "the Kandinsky 2.2 embedding SAE's, Prisma's (with config.json), saev's sae.pt and MSAE's checkpoints."
    )
