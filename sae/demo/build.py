"""``sae-studio demo build``: rebuild every shipped demo model from its seed, stage by stage.

Stages run in order (clip, tune, judge, sae, movq, decoder, refine); each is resumable (its checkpoints live in the work
folder) and is skipped when its output already exists. Each stage's wall time and figures are
recorded in ``assets/demo/build.json``, from which the model card's numbers come.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from sae import atomic
from sae.assets import ASSETS, DEMO
from sae.demo import world

__all__ = ["ASSETS", "DEMO", "PHOTO_NOTE", "STAGES", "build", "coverage_warning", "is_demo_sae", "work_dir"]
STAGES = ("clip", "tune", "judge", "sae", "movq", "decoder", "refine")


# Said beside the coverage line when a picture is far outside the shipped SAE's world.
PHOTO_NOTE = (
    "The shipped demo models know only their 64x64 cartoon world, so on a photograph their "
    "features and edits mean little; sae-studio models lists the real encoder and decoder pairs."
)


def coverage_warning(coverage, sae_folder: str | Path) -> str | None:
    """``coverage.warning()``, told as the demo's own sentence when the SAE is the shipped demo one."""
    warning = coverage.warning()
    return PHOTO_NOTE if warning and is_demo_sae(sae_folder) else warning


def is_demo_sae(folder: str | Path) -> bool:
    """True for the shipped demo SAE's folder."""
    try:
        return Path(folder).resolve() == (DEMO / "sae").resolve()
    except OSError:
        return False


def work_dir() -> Path:
    """Where the build keeps its checkpoints and caches: SAE_STUDIO_WORK, else runs/demo in a source
    checkout, else the user cache (never inside an installed package)."""
    if "SAE_STUDIO_WORK" in os.environ:
        return Path(os.environ["SAE_STUDIO_WORK"])
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / "runs" / "demo"
    from sae.cache import cache_root

    return cache_root() / "demo-runs"


def _record(out: Path, stage: str, figures: dict) -> None:
    path = out / "build.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[stage] = figures
    atomic.write_json(path, record)


def build(
    stages: tuple[str, ...] = STAGES,
    out: Path = DEMO,
    quick: bool = False,
    threads: int | None = None,
    force: bool = False,
    max_minutes: float | None = None,
    warm_start: Path | None = None,
    warm_schedule: str = "relearn",
) -> dict:
    """Run ``stages``; ``max_minutes`` stops any stage's training but the SAE's at a
    checkpoint after that long (run the same command again to continue). ``warm_start``: a trained
    decoder folder whose UNet the decoder stage starts from, on ``warm_schedule`` (a name in
    ``sae.demo.decoder.WARM_SCHEDULES``)."""
    if threads:
        torch.set_num_threads(threads)
    work = work_dir() / ("quick" if quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    done = {}
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes

    def should_stop() -> bool:
        return deadline is not None and time.monotonic() > deadline

    for stage in STAGES:
        if stage not in stages:
            continue
        target = out / stage
        if stage == "tune":  # tunes clip/ in place, and marks it
            from sae.demo.clip_tune import tuning_of

            if not (out / "clip").is_dir() or (tuning_of(out / "clip") and not force):
                continue
        elif stage == "refine":  # refines decoder/movq in place, and marks it
            from sae.demo.refine import is_refined

            if not (out / "decoder").is_dir() or (is_refined(out / "decoder") and not force):
                continue
        elif target.exists() and not force:
            continue
        t0 = time.perf_counter()
        if stage == "clip":
            from sae.demo.clip import COMPACT, train_clip

            figures = train_clip(target, work, quick=quick, should_stop=should_stop, compact=COMPACT)
        elif stage == "tune":
            from sae.demo.clip_tune import tune_clip

            figures = tune_clip(out / "clip", work, quick=quick, should_stop=should_stop)
        elif stage == "judge":
            from sae.demo.judge import train_judge

            figures = train_judge(target, work, quick=quick, should_stop=should_stop)
        elif stage == "sae":
            from sae.demo.sae_recipe import train_demo_sae

            figures = train_demo_sae(target, out / "clip", work, quick=quick)
        elif stage == "movq":
            from sae.demo.decoder import train_movq

            figures = train_movq(target, work, out / "clip", quick=quick, should_stop=should_stop)
        elif stage == "decoder":
            from sae.demo.decoder import train_unet, train_warm

            if warm_start is None:
                figures = train_unet(target, out / "movq", out / "clip", work, quick=quick, should_stop=should_stop)
            else:  # (--quick keeps its own step count per phase, and each phase's edit pairs)
                figures = train_warm(
                    target,
                    out / "movq",
                    out / "clip",
                    work,
                    warm_start,
                    warm_schedule,
                    quick=quick,
                    should_stop=should_stop,
                )
        elif stage == "refine":
            from sae.demo.refine import refine_movq

            figures = refine_movq(out / "decoder", out / "clip", work, quick=quick, should_stop=should_stop)
        if "stopped_at" in figures:
            print(f"{stage}: stopped at step {figures['stopped_at']} (checkpoint saved); run again to continue")
            done[stage] = figures  # (so the command does not also say there was nothing to build)
            break  # later stages need this one
        figures["wall_seconds"] = time.perf_counter() - t0
        figures["world_version"] = world.VERSION
        _record(out, stage, figures)
        done[stage] = figures
    return done
