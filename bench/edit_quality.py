"""Edit quality on the demo world, refereed by the judge (which the editor never uses).

Add a cat: 200 held-out scenes without a cat; the cat latent (best cat AUROC) is raised, the
image decoded, and the judge asked whether it now sees a cat. Remove a hat: 200 scenes with a
hat; the hat latent is set to 0. Preservation: the share of labels the edit should not touch
(background, every other object kind's presence) that the judge still reads the same as on the
unedited decode. Baseline: the CLIP text direction of "a picture of a cat" added to the final
image embedding. Both are swept over strengths; printed: success at matched preservation.

    python bench/edit_quality.py [--n 200] [--steps 12] [--strength 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from PIL import Image  # noqa: E402

from sae.decoders import DecodeSettings  # noqa: E402
from sae.demo import world  # noqa: E402
from sae.demo.build import DEMO  # noqa: E402
from sae.demo.judge import Judge  # noqa: E402
from sae.session import default_session  # noqa: E402
from sae.steer import Edit  # noqa: E402


def scenes(n: int, want: str | None, avoid: str | None, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        sc = world.sample_scene(rng, include=(want,) if want else (), exclude=(avoid,) if avoid else ())
        out.append(world.render(sc, seed=int(rng.integers(2**31))))
    return out


def run(session, judge, images, kind, make_embedding, settings) -> tuple[float, float]:
    """(success, preservation) over ``images`` for one edit."""
    k = world.KINDS.index(kind)
    success, kept = [], []
    for im in images:
        session.set_image(Image.fromarray(im))
        plain = np.asarray(session.decoder.decode(session.embedding([])[None], session.current.image, settings))
        edited = np.asarray(session.decoder.decode(make_embedding(session)[None], session.current.image, settings))
        j = judge.predict(np.stack([plain, edited]))
        p0, p1 = j.present[0] > 0.5, j.present[1] > 0.5
        success.append(p1[k] if kind_added[kind] else not p1[k])
        others = [i for i in range(len(world.KINDS)) if i != k]
        kept.append((np.mean(p0[others] == p1[others]) * len(others) + (j.background[0] == j.background[1])) / (len(others) + 1))
    return float(np.mean(success)), float(np.mean(kept))


kind_added = {"cat": True, "hat": False}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--strength", type=float, default=0.5)
    a = p.parse_args()
    import json

    session = default_session()
    judge = Judge.load(DEMO / "judge")
    concepts = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]
    settings = DecodeSettings(steps=a.steps, strength=a.strength, seed=0)
    from sae.features import FeatureIndex

    unit = FeatureIndex.load(DEMO / "sae").typical_max()
    text = torch.nn.functional.normalize(session.backbone.encode_text(["a picture of a cat"]), dim=-1)[0].detach()
    cat_latent, hat_latent = concepts["cat"]["latent"], concepts["hat"]["latent"]
    no_cat, with_hat = scenes(a.n, None, "cat", 11), scenes(a.n, "hat", None, 12)
    print(f"cat latent #{cat_latent} (unit {unit[cat_latent]:.2f}), hat latent #{hat_latent}; {a.n} scenes each")
    print(f"{'edit':<34}{'success':>9}{'preserved':>11}")
    rows = {}
    for mult in (1, 2, 4, 8):
        v = float(unit[cat_latent]) * mult
        s, k = run(session, judge, no_cat, "cat", lambda ss, v=v: ss.embedding([Edit(cat_latent, "add", v)]), settings)
        rows[("sae", mult)] = (s, k)
        print(f"{f'SAE add cat latent {mult}x unit':<34}{s:>9.3f}{k:>11.3f}")
    for alpha in (0.5, 1, 2, 4):
        def text_edit(ss, alpha=alpha):
            e = ss.embedding([])
            return e + alpha * e.norm() * text * 0.25
        s, k = run(session, judge, no_cat, "cat", text_edit, settings)
        rows[("text", alpha)] = (s, k)
        print(f"{f'text direction x{alpha}':<34}{s:>9.3f}{k:>11.3f}")
    s, k = run(session, judge, with_hat, "hat", lambda ss: ss.embedding([Edit(hat_latent, "set", 0.0)]), settings)
    print(f"{'SAE set hat latent to 0':<34}{s:>9.3f}{k:>11.3f}")

    def best(method):
        ok = [v for (m, _), v in rows.items() if m == method and v[1] >= 0.9]
        return max(ok, default=(0.0, 0.0))
    sae_best, text_best = best("sae"), best("text")
    print(f"\nat preservation >= 0.90: sae_cat_success={sae_best[0]:.3f} text_cat_success={text_best[0]:.3f} hat_removed={s:.3f}")


if __name__ == "__main__":
    main()
