"""Do equal slider steps mean equal change across features? The demo world, refereed by the judge.

For the best detector latent of each object kind (and of each background and colour whose
detector is clean, AUROC >= 0.95 on held-out scenes), the slider is swept in ``add`` mode on the
latent's home tokens with the editor's decode defaults: upward on held-out scenes without the
concept, downward on scenes with it. Each edited embedding is decoded and the judge says whether
it sees the concept. v50 is the slider value at which the judge sees it in half of the scenes
(removal: no longer sees it), interpolated on the sweep; preservation is the share of the other
labels the judge reads as on the unedited decode, at v50. The same sweeps are read in today's
units (the latent's typical max activation) and in the calibrated units of ``sae.calibration``,
which never sees the judge; the slider's range ends at the calibrated saturation.

    python bench/slider_calibration.py [--n 24] [--repeats 3] [--steps 8] [--strength 0.9] [--region edited]

Each repeat sweeps ``--n`` fresh scenes per concept and side, and v50 is read from all the repeats'
scenes pooled: with 24 scenes, binomial noise alone spreads v50 enough to move the CV by about
0.04 (the standard error the last lines print). The sweeps are cached in ``--cache``, one repeat
at a time, so a second run only decodes the repeats it lacks.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoded_edits import decode, demo_session, embeddings  # noqa: E402

from sae.demo import world  # noqa: E402

MULTIPLES = (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12)  # the sweep, in today's units
CLEAN = 0.95  # a background or colour latent is a clean detector from this AUROC
MONOTONE_SLACK = 0.15  # success may dip this far below its best so far and still count as rising


@dataclass(frozen=True)
class Concept:
    kind: str  # "object", "background" or "colour"
    name: str

    def truth(self, scene: world.Scene) -> bool:
        if self.kind == "object":
            return self.name in scene.kinds()
        if self.kind == "background":
            return scene.background == self.name
        return any(t.colour == self.name for t in scene.things)

    def seen(self, j) -> np.ndarray:
        """[N] whether the judge sees the concept in each picture."""
        present = j.present > 0.5
        if self.kind == "object":
            return present[:, world.KINDS.index(self.name)]
        if self.kind == "background":
            return j.background == world.BACKGROUNDS.index(self.name)
        return (present & (j.colour == world.COLOURS.index(self.name))).any(1)

    def preservation(self, j0, j1) -> float:
        """The share of the other labels (each kind's presence, the background) read the same."""
        others = [i for i, k in enumerate(world.KINDS) if not (self.kind == "object" and k == self.name)]
        same = ((j0.present[:, others] > 0.5) == (j1.present[:, others] > 0.5)).sum(1)
        n = len(others)
        if self.kind != "background":
            same = same + (j0.background == j1.background)
            n += 1
        return float((same / n).mean())


def scenes(concept: Concept, n: int, having: bool, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        kw = {}
        if concept.kind == "object":
            kw = {"include": (concept.name,)} if having else {"exclude": (concept.name,)}
        elif concept.kind == "background" and having:
            kw = {"background": concept.name}
        sc = world.sample_scene(rng, **kw)
        if concept.truth(sc) == having and not (concept.name == "sun" and sc.background == "indoor"):
            out.append(world.render(sc, seed=int(rng.integers(2**31))))
    return out


def detectors(session, n: int = 1000) -> dict[Concept, tuple[int, float]]:
    """The best latent of each concept and its AUROC: objects from the model card's evaluation,
    backgrounds and colours measured here on held-out scenes (kept when clean)."""
    from sae.demo.build import DEMO
    from sae.demo.data import world_data
    from sae.demo.evaluate import HELD_OUT_SEED
    from sae.demo.metrics import auroc_per_column
    from sae.demo.sae_recipe import image_codes

    concepts = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]
    out = {Concept("object", k): (v["latent"], v["auroc"]) for k, v in concepts.items()}
    held = world_data(n, seed=HELD_OUT_SEED)
    codes = image_codes(session.backbone, session.sae, held.images)
    labels = {Concept("background", b): held.background == i for i, b in enumerate(world.BACKGROUNDS)}
    for i, c in enumerate(world.COLOURS):
        labels[Concept("colour", c)] = ((held.present > 0) & (held.colour == i)).any(1)
    for concept, positive in labels.items():
        scores = auroc_per_column(codes, positive)
        best = int(np.nanargmax(scores))
        if scores[best] >= CLEAN:
            out[concept] = (best, float(scores[best]))
    return out


def sweep(session, judge, concept: Concept, latent: int, tokens: str, values, n: int, settings, seed: int) -> dict:
    """Success and preservation at each slider value (raw activation amounts, one sign)."""
    from sae.steer import Edit

    having = values[0] < 0  # removal: scenes with the concept
    images = scenes(concept, n, having, seed)
    makers = [lambda ss, v=float(v): ss.embedding([Edit(latent, "add", v, tokens=tokens)]) for v in values]
    plain_e, edited = embeddings(session, images, makers)
    plain = judge.predict(decode(session, plain_e, images, settings, plain_e))
    base = concept.seen(plain) == having  # scenes whose unedited decode reads as the scene does
    success, kept = [], []
    for e in edited:
        j = judge.predict(decode(session, e, images, settings, plain_e))
        seen = concept.seen(j)
        success.append(float((seen != having)[base].mean()) if base.any() else float("nan"))
        kept.append(concept.preservation(plain, j))
    return {"values": values.tolist(), "success": success, "kept": kept, "scenes": int(base.sum())}


def v50(values: np.ndarray, success: np.ndarray, limit: float = np.inf) -> float:
    """The smallest |value| at which success first reaches 0.5, linearly interpolated (inf: never,
    within ``limit``)."""
    prev_v, prev_s = 0.0, 0.0
    for v, s in zip(np.abs(values), success, strict=True):
        if v > limit:
            break
        if s >= 0.5:
            return prev_v + (v - prev_v) * (0.5 - prev_s) / max(s - prev_s, 1e-9)
        prev_v, prev_s = v, s
    return float("inf")


def rises(values: np.ndarray, success: np.ndarray, limit: float = np.inf) -> bool:
    """Success never falls more than MONOTONE_SLACK below its best so far, within ``limit``."""
    best = 0.0
    for v, s in zip(np.abs(values), success, strict=True):
        if v > limit:
            break
        if s < best - MONOTONE_SLACK:
            return False
        best = max(best, s)
    return True


def cv(x: list[float]) -> float:
    """Coefficient of variation (population standard deviation over mean)."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.std() / x.mean()) if len(x) else float("nan")


def main() -> None:
    from decoded_edits import parse_args

    a = parse_args(__doc__, 24, "scenes per concept, side and repeat", cache=True, repeats=3)
    from sae.decoders import DecodeSettings
    from sae.demo.build import DEMO
    from sae.demo.judge import Judge
    from sae.workspace import Workspace

    session = demo_session(a.decoder)
    workspace = Workspace.open(DEMO / "sae", backbone=session.backbone)
    judge = Judge.load(DEMO / "judge")
    settings = DecodeSettings(steps=a.steps, strength=a.strength, seed=0, region=a.region)
    cache = Path(a.cache)
    raw = json.loads(cache.read_text()) if cache.is_file() else {}
    found = detectors(session)
    for repeat in range(a.repeats):
        key = repeat_key(a, repeat)
        results = raw.get(key, {})
        for i, (concept, (latent, auroc)) in enumerate(found.items()):
            name = f"{concept.kind}:{concept.name}"
            if name in results:
                continue
            unit, tokens = workspace.unit(latent), workspace.home_tokens(latent)
            up, seed = np.array(MULTIPLES) * unit, i + REPEAT_SEEDS * repeat
            results[name] = {
                "latent": latent,
                "auroc": auroc,
                "unit": unit,
                "add": sweep(session, judge, concept, latent, tokens, up, a.n, settings, 100 + seed),
                "remove": sweep(session, judge, concept, latent, tokens, -up, a.n, settings, 200 + seed),
            }
            raw[key] = results
            cache.write_text(json.dumps(raw))
            print(f"swept {name} (latent {latent}), repeat {repeat + 1} of {a.repeats}", flush=True)

    results = pooled([raw[repeat_key(a, r)] for r in range(a.repeats)])
    responses = {name: workspace.responses(r["latent"]) for name, r in results.items()}
    table(results, responses)


REPEAT_SEEDS = 1000  # each repeat draws its scenes from seeds this far from the last one's


def repeat_key(a, repeat: int) -> str:
    """Where one repeat's sweeps are cached (the first under the key runs had before repeats)."""
    key = f"{a.n}-{a.steps}-{a.strength}-{a.region}"
    return key if repeat == 0 else f"{key}-r{repeat}"


def pooled(repeats: list[dict]) -> dict:
    """The repeats' sweeps as one: success over all their scenes, preservation averaged."""
    out = {}
    for name, first in repeats[0].items():
        out[name] = dict(first)
        for side in ("add", "remove"):
            sides = [r[name][side] for r in repeats]
            counts = np.array([s["scenes"] for s in sides], dtype=np.float64)
            success = np.array([s["success"] for s in sides], dtype=np.float64)  # [R, values]
            hits = np.nansum(success * counts[:, None], axis=0)
            out[name][side] = {
                "values": first[side]["values"],
                "success": (hits / counts.sum()).tolist() if counts.sum() else [float("nan")] * success.shape[1],
                "kept": np.mean([s["kept"] for s in sides], axis=0).tolist(),
                "scenes": int(counts.sum()),
            }
    return out


def candidates(responses, units: dict[str, float]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """name -> concept -> [(unit, saturation in units)] per side: sae-studio's calibration; for
    comparison, a fixed embedding distance on both sides (as calibrated units were before removal
    took the typical unit and the distance each latent's separation), and a unit half the way to
    the slider's far end (a share, not a distance)."""
    from sae.calibration import SATURATION_SHARE, calibrated, side

    out: dict[str, dict] = {"calibrated": {}, "distance": {}, "half-way": {}}
    for name, pair in responses.items():
        c = calibrated(pair, typical=units[name])
        out["calibrated"][name] = [(s.unit, s.saturation) if c.calibrated else (np.nan, np.nan) for s in (c.up, c.down)]
        for r in (pair.up, pair.down):
            s = side(r)
            out["distance"].setdefault(name, []).append((s.unit, s.saturation) if s else (np.nan, np.nan))
            half, end = abs(r.value_at(0.5 * r.far)), abs(r.value_at(SATURATION_SHARE * r.far))
            out["half-way"].setdefault(name, []).append((half, end / half))
    return out


def table(results: dict, responses: dict) -> None:
    """Per latent and side: v50 in today's units and in each calibration's (with "!" where it lies
    beyond that slider's range), the preservation at v50, whether success rises along the slider's
    range; then the spread of v50 over the latents whose v50 the sweep reaches."""
    from sae.units import TYPICAL_RANGE

    cands = candidates(responses, {name: r["unit"] for name, r in results.items()})
    kinds = ("today", *cands)
    head = "".join(f"{c:>12}" for c in kinds)
    print(f"\n{'concept':<20}{'latent':>7}  add: v50 in{head}{'kept':>6}{'rises':>6}   remove: v50 in{head}{'kept':>6}")
    v: dict = {c: {"add": [], "remove": []} for c in kinds}
    reached: dict = {"add": [], "remove": []}  # (values, success, scenes, {kind: unit}) where v50 is reached
    monotone: dict = {c: [] for c in kinds}
    unreached = {"add": 0, "remove": 0}
    for name, r in results.items():
        line = f"{name:<20}{r['latent']:>7}  " + " " * 11
        for k, side_name in enumerate(("add", "remove")):
            s = r[side_name]
            values, success = np.array(s["values"]), np.array(s["success"])
            raw = v50(values, success)
            units = {"today": (r["unit"], TYPICAL_RANGE)} | {c: per[name][k] for c, per in cands.items()}
            if np.isfinite(raw):
                reached[side_name].append((values, success, s["scenes"], {c: u for c, (u, _) in units.items()}))
            for c, (unit, sat) in units.items():
                x = raw / unit
                if np.isfinite(raw):
                    v[c][side_name].append(x)
                line += f"{x:>11.2f}{'!' if x > sat else ' '}"
                if side_name == "add":
                    monotone[c].append(rises(values, success, sat * unit))
            unreached[side_name] += not np.isfinite(raw)
            kept = float(np.interp(raw, np.abs(values), s["kept"])) if np.isfinite(raw) else float("nan")
            line += f"{kept:>6.2f}"
            if k == 0:
                line += f"{'yes' if rises(values, success) else 'no':>6}   " + " " * 14
        print(line)
    print(
        f"\nv50 reached within {MULTIPLES[-1]:g} typical units: add {len(results) - unreached['add']} of "
        f"{len(results)}, remove {len(results) - unreached['remove']} of {len(results)} ('!': beyond the range)"
    )
    for c in kinds:
        print(
            f"{c:<12} cv of v50: add {cv(v[c]['add']):.3f}  remove {cv(v[c]['remove']):.3f}  "
            f"success rises along the range: {np.mean(monotone[c]):.2f}"
        )
    best = "calibrated"
    errors = {side: standard_errors(rows, ("today", best)) for side, rows in reached.items()}
    print(
        f"standard error of the cv (each value's scenes resampled, {RESAMPLES} draws): "
        + "  ".join(f"{side} {k} {e:.3f}" for side, per in errors.items() for k, e in per.items())
    )
    print(
        f"cv_before={cv(v['today']['add']):.3f} cv_after={cv(v[best]['add']):.3f} "
        f"monotonic={np.mean(monotone[best]):.2f} removal_cv_before={cv(v['today']['remove']):.3f} "
        f"removal_cv_after={cv(v[best]['remove']):.3f}"
    )


RESAMPLES = 500


def standard_errors(rows: list, kinds: tuple[str, ...], seed: int = 0) -> dict[str, float]:
    """The CV of v50's spread under binomial noise: each value's success redrawn from its scenes,
    v50 found again (latents whose redrawn v50 is out of reach are left out of that draw)."""
    rng = np.random.default_rng(seed)
    draws: dict = {k: [] for k in kinds}
    for _ in range(RESAMPLES):
        redrawn = [
            (v50(values, rng.binomial(n, np.nan_to_num(success).clip(0, 1)) / max(n, 1)), units)
            for values, success, n, units in rows
        ]
        for k in kinds:
            draws[k].append(cv([raw / units[k] for raw, units in redrawn if np.isfinite(raw)]))
    return {k: float(np.nanstd(d)) for k, d in draws.items()}


if __name__ == "__main__":
    main()
