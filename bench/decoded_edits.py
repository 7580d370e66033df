"""What the edit benches share: edited embeddings of many scenes, decoded in batches, and the
judge's reading of what an edit kept."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from PIL import Image  # noqa: E402

from sae.decoders import DecodeSettings  # noqa: E402
from sae.demo.fidelity import preservation  # noqa: E402,F401  (the edit benches import it from here)


def parse_args(doc: str, n: int, n_help: str = "edited scenes per strength", cache: bool = False, repeats: int = 0):
    """The arguments every decoded-edit bench takes (and ``--cache``, a file of earlier sweeps;
    ``--repeats``, sets of ``--n`` fresh scenes pooled, when ``repeats`` gives its default)."""
    import argparse

    from sae.decoders import default_steps, default_strength

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=n, help=n_help)
    p.add_argument(
        "--steps", type=int, default=default_steps("demo"), help="denoising steps (default: the demo decoder's)"
    )
    p.add_argument(
        "--strength",
        type=float,
        default=default_strength("demo"),
        help="img2img strength of the edits (default: the demo decoder's)",
    )
    from sae.decoders.region import REGIONS

    p.add_argument(
        "--region",
        choices=REGIONS,
        default=DecodeSettings.region,
        help="repaint only where the edit changes the prediction, or the whole image (default: %(default)s)",
    )
    p.add_argument("--decoder", default=None, help="a pipeline folder instead of the demo decoder (dry runs)")
    if cache:
        import tempfile

        default = Path(tempfile.gettempdir()) / f"{Path(sys.argv[0]).stem}-sweeps.json"
        p.add_argument("--cache", default=str(default), help="keeps the decoded sweeps (default: %(default)s)")
    if repeats:
        p.add_argument(
            "--repeats",
            type=int,
            default=repeats,
            help="sets of --n fresh scenes, each cached on its own and pooled (default: %(default)s)",
        )
    return p.parse_args()


def demo_session(decoder: str | None):
    """The shipped demo session, with ``decoder`` (a pipeline folder) in place of the demo decoder
    if given; exits with one sentence when there is no decoder to paint the edits."""
    from sae.demo.session import default_session

    session = default_session()
    if decoder:
        from sae.decoders.registry import load_decoder

        session.decoder = load_decoder(decoder, session.backbone)
    if session.decoder is None:
        sys.exit("The demo decoder is not built yet (assets/demo/decoder); this bench decodes every edit.")
    return session


def embeddings(
    session, images: Sequence[np.ndarray], makers: Sequence[Callable]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per scene, the unedited final embedding and one edited embedding per ``makers`` entry
    (each called with the session holding that scene)."""
    plain, edited = [], [[] for _ in makers]
    with torch.no_grad():
        for im in images:
            session.set_image(Image.fromarray(im))
            plain.append(session.embedding([]))
            for out, make in zip(edited, makers, strict=True):
                out.append(make(session))
    return torch.stack(plain), [torch.stack(e) for e in edited]


def decode(
    session,
    embeds: torch.Tensor,
    images: Sequence[np.ndarray],
    settings: DecodeSettings,
    sources: torch.Tensor,
    batch: int = 32,
) -> np.ndarray:
    """Batched img2img from each scene, ``sources`` being the scenes' unedited embeddings (the edit
    region is where ``embeds`` differs from them); batch i uses seed ``settings.seed + i``, so an
    edited and an unedited decode of the same scene get the same noise."""
    out = []
    for i in range(0, len(embeds), batch):
        pil = [Image.fromarray(im) for im in images[i : i + batch]]
        s = DecodeSettings(settings.steps, settings.strength, settings.guidance, settings.seed + i, settings.region)
        out += [
            np.asarray(x.convert("RGB"))
            for x in session.decoder.decode_many(embeds[i : i + batch], pil, s, sources[i : i + batch])
        ]
    return np.stack(out)


PRESERVATION = 0.9  # "at equal preservation": where each edit's curve falls to this


def at_preservation(rows) -> tuple[float, str]:
    """``rows``: (value, success, preservation) in increasing value.

    The best success along the curve (value 0: success 0, preservation 1; then the sweep) up to
    where it first falls to PRESERVATION, that crossing linearly interpolated between the two grid
    points around it. If it never falls that far and the best is at the largest value, that
    success is marked ">=", since a stronger edit might still do better."""
    points = [(0.0, 1.0)] + [(s, k) for _, s, k in rows if s == s]  # s == s: not NaN
    best = 0.0
    for (s0, k0), (s1, k1) in itertools.pairwise(points):
        if k1 < PRESERVATION <= k0:
            return max(best, s0 + (s1 - s0) * (k0 - PRESERVATION) / (k0 - k1)), "="
        best = max(best, s1)
    return best, (">=" if best == points[-1][0] else "=")
