"""Edit quality on the demo world, refereed by the judge (which the editor never uses).

Add a cat: 200 held-out scenes without a cat; the cat latent (best cat AUROC) is raised, the
image decoded, and the judge asked whether it now sees a cat. Remove a hat: 200 scenes with a
hat; the hat latent is set to 0, and (swept) pushed below zero by adding a negative amount.
Preservation: the share of labels the edit should not touch (background, every other object
kind's presence) that the judge still reads the same as on the unedited decode. Baseline: the CLIP
text direction of "a picture of a cat" added to the final image embedding. Both are swept over
strengths; printed: each one's success where its success-vs-preservation curve falls to 90%
preservation (interpolated), i.e. at matched preservation.

Each SAE edit touches the tokens where its latent fires in the index (``FeatureIndex.home_tokens``,
as a new slider in the editor and a quick edit in the CLI do): the cat latent fires on the cat's
patches, so it is added on the patches alone; the hat latent fires on the class token, so it is
edited on every token. The cat is also added on every token, for comparison.

Two latents are measured per concept: the one whose image-level activation best separates the
concept (its AUROC, from ``eval.json``), and the top hit of ``sae-studio features --search``, which
is the one a user finds.

Twin reference: each scene decoded (img2img from it, as the edits are) from the CLIP embedding of
its twin drawn with a cat (or without its hat), on other scenes of the same kinds: what the decoder
makes of the embedding of the very image wanted. It tells the decoder's share of a shortfall from
the edit's. It is no ceiling: an edit may push the embedding further than any real scene does.

    python bench/edit_quality.py [--n 200] [--steps 8] [--strength 0.9] [--region edited]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoded_edits import PRESERVATION, at_preservation, decode, demo_session, embeddings, parse_args, preservation  # noqa: E402,I001

from sae.decoders import DecodeSettings  # noqa: E402
from sae.demo import world  # noqa: E402
from sae.demo.build import DEMO  # noqa: E402
from sae.demo.judge import Judge  # noqa: E402
from sae.steer import Edit  # noqa: E402


def scenes(n: int, want: str | None, avoid: str | None, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        sc = world.sample_scene(rng, include=(want,) if want else (), exclude=(avoid,) if avoid else ())
        out.append(world.render(sc, seed=int(rng.integers(2**31))))
    return out


def pairs(n: int, kind: str, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Scenes with ``kind`` and the same scenes drawn without it (same background details); scenes
    where a hat sits on a ``kind`` are skipped, since removing the wearer moves the hat."""
    rng = np.random.default_rng(seed)
    having, lacking = [], []
    while len(having) < n:
        sc = world.sample_scene(rng, include=(kind,))
        r = int(rng.integers(2**31))
        if any(t.on == kind for t in sc.things):
            continue
        having.append(world.render(sc, seed=r))
        lacking.append(world.render(world.Scene(sc.background, [t for t in sc.things if t.kind != kind]), seed=r))
    return having, lacking


def twin_reference(session, judge, settings, start: list[np.ndarray], target: list[np.ndarray], kind: str, added: bool):
    """(success, preservation) of decoding each ``start`` scene from the embedding of its ``target``
    twin (the same scene with ``kind`` drawn in or out) instead of an edited embedding."""
    plain_e, _ = embeddings(session, start, [])
    target_e, _ = embeddings(session, target, [])
    plain = decode(session, plain_e, start, settings, plain_e)
    return score(judge, plain, decode(session, target_e, start, settings, plain_e), kind, added)


def score(judge, plain: np.ndarray, edited: np.ndarray, kind: str, added: bool) -> tuple[float, float]:
    """(success, preservation): success = the judge sees ``kind`` (added) or no longer sees it,
    over the scenes whose unedited decode it did not (added) or did show; preservation = the share
    of the other labels (background, other kinds' presence) read the same on the edited decode as
    on the unedited one."""
    k = world.KINDS.index(kind)
    j0, j1 = judge.predict(plain), judge.predict(edited)
    p0, p1 = j0.present > 0.5, j1.present > 0.5
    success = (p1[:, k] if added else ~p1[:, k])[p0[:, k] != added]
    return (float(success.mean()) if success.size else float("nan")), preservation(j0, j1, kind)


def main() -> None:
    a = parse_args(__doc__, 200, "scenes per concept")
    import json

    session = demo_session(a.decoder)
    judge = Judge.load(DEMO / "judge")
    concepts = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]
    settings = DecodeSettings(steps=a.steps, strength=a.strength, seed=0, region=a.region)
    from sae.features import FeatureIndex

    index = FeatureIndex.load(DEMO / "sae")
    unit = index.typical_max()
    text = torch.nn.functional.normalize(session.backbone.encode_text(["a picture of a cat"]), dim=-1)[0].detach()
    from sae.labels import load_directions, search

    def searched(query: str) -> int:
        q = torch.nn.functional.normalize(session.backbone.encode_text([query]), dim=-1)[0].detach()
        return search(query, q, load_directions(DEMO / "sae"), session.labels, top=1)[0].latent

    cats = {"best-AUROC": concepts["cat"]["latent"], "searched": searched("cat")}
    hats = {"best-AUROC": concepts["hat"]["latent"], "searched": searched("cowboy hat")}
    no_cat, with_hat = scenes(a.n, None, "cat", 11), scenes(a.n, "hat", None, 12)
    print(f"cat latents {cats}, hat latents {hats}; {a.n} scenes each")
    print(f"{'edit':<48}{'success':>9}{'preserved':>11}")
    adds = {}  # (method, latent, strength) -> makes the edited embedding
    for c in sorted(set(cats.values())):  # (once when search finds the best-AUROC latent)
        for mult in (0.5, 1, 1.5, 2, 3, 4, 8):
            adds[("sae", c, mult)] = lambda ss, c=c, v=float(unit[c]) * mult: ss.embedding(
                [Edit(c, "add", v, tokens=index.home_tokens(c))]
            )
        if index.home_tokens(c) != "all":
            for mult in (0.5, 1, 2, 4):
                adds[("sae-all", c, mult)] = lambda ss, c=c, v=float(unit[c]) * mult: ss.embedding([Edit(c, "add", v)])
    for alpha in (0.5, 1, 2, 4):  # the text direction, scaled to a share of the embedding's norm
        adds[("text", "", alpha)] = lambda ss, alpha=alpha: (e := ss.embedding([])) + alpha * 0.25 * e.norm() * text
    plain_e, edited_e = embeddings(session, no_cat, list(adds.values()))
    plain = decode(session, plain_e, no_cat, settings, plain_e)
    rows = {}
    for key, e in zip(adds, edited_e, strict=True):
        rows[key] = s, k = score(judge, plain, decode(session, e, no_cat, settings, plain_e), "cat", added=True)
        method, c, strength = key
        which = "/".join(w for w, v in cats.items() if v == c)
        if method == "text":
            name = f"text direction x{strength}"
        else:
            name = f"SAE add #{c} ({which}) {strength}x on {'all' if method == 'sae-all' else index.home_tokens(c)}"
        print(f"{name:<48}{s:>9.3f}{k:>11.3f}")
    hat_latents = sorted(set(hats.values()))
    # the edit, set to 0; and pushing the latent below zero (add a negative amount everywhere),
    # swept like the cat's addition, since zeroing one latent leaves what the SAE's error and
    # neighbouring latents still say of the hat
    removals = {}
    for h in hat_latents:
        on = index.home_tokens(h)
        removals[(h, "set", 0.0)] = lambda ss, h=h, on=on: ss.embedding([Edit(h, "set", 0.0, tokens=on)])
        for mult in (0.5, 1, 2):
            removals[(h, "add", -mult)] = lambda ss, h=h, v=-float(unit[h]) * mult, on=on: ss.embedding(
                [Edit(h, "add", v, tokens=on)]
            )
    plain_e, edited_e = embeddings(session, with_hat, list(removals.values()))
    plain = decode(session, plain_e, with_hat, settings, plain_e)
    removed, pushed = {}, {}
    for (h, mode, mult), e in zip(removals, edited_e, strict=True):
        s, k = score(judge, plain, decode(session, e, with_hat, settings, plain_e), "hat", added=False)
        which = "/".join(w for w, v in hats.items() if v == h)
        if mode == "set":
            removed.update({w: s for w, v in hats.items() if v == h})
            name = f"SAE set #{h} ({which}) to 0 on {index.home_tokens(h)}"
        else:
            pushed.setdefault(h, []).append((mult, s, k))  # weakest first
            name = f"SAE add #{h} ({which}) {mult}x on {index.home_tokens(h)}"
        print(f"{name:<48}{s:>9.3f}{k:>11.3f}")

    having, lacking = pairs(a.n, "cat", 13)
    twin_cat = twin_reference(session, judge, settings, lacking, having, "cat", added=True)
    having, lacking = pairs(a.n, "hat", 14)
    twin_hat = twin_reference(session, judge, settings, having, lacking, "hat", added=False)
    print(f"{'twin embedding: the scene with a cat':<48}{twin_cat[0]:>9.3f}{twin_cat[1]:>11.3f}")
    print(f"{'twin embedding: the scene without its hat':<48}{twin_hat[0]:>9.3f}{twin_hat[1]:>11.3f}")

    def matched(sweep):
        value, op = at_preservation(sweep)
        return f"{op} {value:.3f}"

    def at_equal(method, c=""):
        return matched([(v, *r) for (m, cc, v), r in rows.items() if m == method and cc == c])

    print(
        f"\nsuccess at preservation {PRESERVATION} (interpolated along each sweep): "
        + " ".join(f"sae_{w}_cat {at_equal('sae', c)}" for w, c in cats.items())
        + " ".join(
            f" sae_{w}_cat_on_all_tokens {at_equal('sae-all', c)}"
            for w, c in cats.items()
            if index.home_tokens(c) != "all"
        )
        + f" text_cat {at_equal('text')} "
        + " ".join(f"{w}_hat_removed={v:.3f}" for w, v in removed.items())
        + " "
        + " ".join(f"{w}_hat_pushed_below_zero {matched(pushed[v])}" for w, v in hats.items())
        + f"\ndecoded from the wanted twin's own embedding: cat added {twin_cat[0]:.3f}, hat removed {twin_hat[0]:.3f}"
    )


if __name__ == "__main__":
    main()
