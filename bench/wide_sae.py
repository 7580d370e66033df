"""Wide SAEs: the Kandinsky 2.2 embedding SAE's width (163,840 latents on a 1280-d embedding).

Random weights in the layout of ``gytdau/clip-sae-128`` (a fp16 pickle, 839 MB) on a narrow CLIP
whose image embedding is 1280-d like ViT-bigG-14's, with a tiny Kandinsky 2.2-shaped decoder, so
everything but the encoder's own cost is at the real size. Measured: import and load (time, peak
memory), one image's encode, "what fires", the index over 1,000 pictures (time, size on disk),
labelling with the everyday vocabulary, ``features --search`` per query (target <= 100 ms), and
the editor's longest GUI-thread stall with the wide SAE loaded (target <= 50 ms, measured as
``bench/gui_responsiveness.py`` does).

    python bench/wide_sae.py [--latents 163840] [--images 1000] [--queries 20]

The last line reads ``search_ms=S stall_ms=G load_s=L index_mb=M``. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

D = 1280  # ViT-bigG-14's image embedding, which Kandinsky 2.2 paints
QUERIES = ["cat", "red hat", "a dog on grass", "sunset", "cowboy hat", "blue sky", "face", "car", "tree", "water"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def build_world(root: Path, latents: int, n_images: int) -> tuple[Path, Path, Path, Path]:
    """(encoder folder, decoder folder, pickle, pictures) in ``root``."""
    import open_clip
    import torch
    from helpers import save_tiny_kandinsky, tiny_clip_config, write_images

    from sae.backbone import save_local_dir

    cfg = tiny_clip_config("ViT-B-16", image_size=32)
    cfg["embed_dim"] = D
    torch.manual_seed(0)
    clip = save_local_dir(open_clip.CLIP(**cfg), cfg, root / "clip-1280")
    decoder = save_tiny_kandinsky(root / "decoder", embed_dim=D)
    g = torch.Generator().manual_seed(0)
    enc = torch.randn(latents, D, generator=g) / D**0.5
    state = {  # gytdau/clip-sae-128's keys and dtype; a negative bias keeps it sparse like a trained one
        "encoder.weight": enc.half(),
        "enc_bias": torch.full((latents,), -0.05).half(),
        "decoder.weight": (enc.T * 0.1).half(),
        "dec_bias": torch.zeros(D).half(),
    }
    (root / "clip-sae-128").mkdir()
    torch.save(state, root / "clip-sae-128" / "sparse_autoencoder_128.pth")
    images = write_images(root / "pictures", n_images, size=32)
    return clip, decoder, root / "clip-sae-128", images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latents", type=int, default=163_840, help="SAE width (the published one: 163,840)")
    p.add_argument("--images", type=int, default=1000, help="pictures to index")
    p.add_argument("--queries", type=int, default=20, help="search queries to time")
    p.add_argument("--drags", type=int, default=4, help="slider drags in the editor stall measurement")
    a = p.parse_args()
    if not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    import torch

    from sae.backbone import load_backbone
    from sae.importing import import_sae
    from sae.make import index_and_label
    from sae.model import SparseAutoencoder
    from sae.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="wide-sae-"))
    clip, decoder, pickle, images = build_world(root, a.latents, a.images)
    rows = [("pickle on disk", f"{folder_mb(pickle):,.0f} MB", peak_mb())]

    base = peak_mb()
    done, t_import = timed(import_sae, pickle, root / "sae", model=str(clip))
    rows += [
        ("import (pickle -> safetensors)", f"{t_import:.1f} s, peak memory +{peak_mb() - base:,.0f} MB", peak_mb())
    ]
    del done
    sae, t_load = timed(SparseAutoencoder.load, root / "sae")
    rows += [("load the project SAE", f"{t_load:.2f} s ({folder_mb(root / 'sae'):,.0f} MB on disk)", peak_mb())]

    backbone = load_backbone(str(clip), layer=sae.metadata.layer)
    emb = torch.randn(1, D)
    with torch.inference_mode():
        sae.encode(emb)  # warm
        encodes = [timed(sae.encode, emb)[1] for _ in range(10)]
    rows += [("encode one image's embedding", f"{statistics.median(encodes) * 1000:.1f} ms", peak_mb())]

    _, t_label = timed(index_and_label, root / "sae", backbone, sae, images, vocabulary="everyday")
    rows += [(f"index {a.images:,} pictures + label (everyday words)", f"{t_label:.1f} s", peak_mb())]
    rows += [("index on disk", f"{folder_mb(root / 'sae' / 'index'):,.1f} MB", peak_mb())]

    ws = Workspace.open(root / "sae", backbone=backbone)
    _, t_first = timed(ws.search, "cat")  # reads the directions and index once
    times = [timed(ws.search, QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}"))[1] for i in
             range(a.queries)]  # fmt: skip
    search_ms = statistics.median(times) * 1000
    rows += [("first search (loads directions)", f"{t_first * 1000:.0f} ms", peak_mb())]
    rows += [
        (
            "search per query (target <= 100 ms)",
            f"median {search_ms:.1f} ms, worst {max(times) * 1000:.1f} ms",
            peak_mb(),
        )
    ]

    from PIL import Image

    session = ws.session()
    _, t_set = timed(session.set_image, Image.open(next(images.rglob("*.png"))).convert("RGB"))
    _, t_fires = timed(session.fires, 20)
    rows += [("open a picture / what fires (top 20)", f"{t_set * 1000:.0f} ms / {t_fires * 1000:.1f} ms", peak_mb())]

    from gui_responsiveness import measure

    from editor.model import EditorModel
    from sae.decoders.registry import load_decoder

    gui = measure(
        lambda: EditorModel(Workspace.open(root / "sae", backbone=backbone), load_decoder(str(decoder), backbone)),
        sorted(images.rglob("*.png"))[:6],
        drags=a.drags,
        moves=20,
        search=QUERIES[:3],
    )
    stall = gui["longest_gap_ms"]
    rows += [
        ("editor: longest GUI-thread stall (target <= 50 ms)", f"{stall:.1f} ms ({gui['worst_phase']})", peak_mb())
    ]

    width = max(len(k) for k, *_ in rows)
    print(f"wide SAE: {a.latents:,} latents x {D}-d, {a.images:,} pictures, torch threads {torch.get_num_threads()}")
    print(f"  {'':<{width}}  (process peak memory so far after each step)")
    for k, v, peak in rows:
        print(f"  {k:<{width}}  {v}  [{peak:,.0f} MB]")
    index_mb = folder_mb(root / "sae" / "index")
    print(f"search_ms={search_ms:.1f} stall_ms={stall:.1f} load_s={t_load:.2f} index_mb={index_mb:.1f}")


if __name__ == "__main__":
    main()
