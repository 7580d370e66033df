"""GUI responsiveness: a heartbeat timer on the GUI thread while sliders are dragged and images decode.

A 5 ms heartbeat records the gaps between its ticks; a scripted user drags a slider at 60 moves
per second, releases it, waits for the full-quality result, and switches images now and then.
Prints the longest gap and the 99th-percentile gap (target: longest <= 50 ms) and the median
time from releasing a slider to the finished result on screen.

    python bench/gui_responsiveness.py [--drags 8] [--moves 30] [--quick]

Without --quick it runs on the shipped demo models (needs the demo decoder); --quick builds toy
models in a temporary folder first (about two minutes), for a machine where they are not built.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _wait(ms: int) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _wait_until(cond, timeout_s: float = 60.0) -> None:
    end = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("the window did not finish in time")
        _wait(2)


def _quick_loader():
    from helpers import build_quick_demo

    from editor.model import EditorModel
    from sae.backbone import load_backbone
    from sae.decoders.registry import load_decoder
    from sae.features import build_index
    from sae.model import SparseAutoencoder
    from sae.workspace import Workspace

    root, images = build_quick_demo(Path(tempfile.mkdtemp(prefix="gui-bench-")), 16)
    sae = SparseAutoencoder.load(root / "demo" / "sae")
    bb = load_backbone(str(root / "demo" / "clip"), layer=sae.metadata.layer)
    build_index(root / "demo" / "sae", bb, sae, images, progress=False)
    return (
        lambda: EditorModel(Workspace.open(root / "demo" / "sae", backbone=bb), load_decoder(str(root / "decoder"), bb))
    ), sorted(images.glob("*.png"))


def measure(loader, images: list[Path], drags: int = 8, moves: int = 30, search: list[str] = ()) -> dict:
    """Open a window on ``loader``'s model, run the scripted user (and type each query of
    ``search`` into the search box), and return the heartbeat's figures."""
    from PySide6.QtCore import QElapsedTimer, QSettings, QThreadPool, QTimer
    from PySide6.QtWidgets import QApplication

    from editor.main_window import MainWindow

    app = QApplication.instance() or QApplication([])  # noqa: F841 (kept alive while the window runs)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(loader, settings=settings)
    w.show()
    _wait_until(lambda: w.model is not None, 300)
    if w.model.session.decoder is None:
        sys.exit("No decoder is loaded: build the demo decoder (sae-studio demo build) or pass --quick.")

    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    phase = ["start"]  # what the scripted user is doing: the longest gap is reported with it
    worst: dict[str, float] = {}

    def beat() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        worst[phase[0]] = max(worst.get(phase[0], 0.0), gaps[-1])
        last[0] = now

    heart = QTimer(interval=5)
    heart.timeout.connect(beat)
    heart.start()

    release_to_result: list[float] = []
    for d in range(drags):
        if d % 3 == 0:  # switch images now and then
            phase[0] = "image switch"
            w.result = None
            w.open_image(images[(d // 3) % len(images)])
            _wait_until(lambda: w.result is not None and not w.scheduler._running)
            latent = w.model.session.fires(1)[0].latent
            for row in list(w.sliders.rows):
                w.sliders.remove(row)
            w.add_slider(latent)
        row = w.sliders.rows[0]
        before = row.slider.value()
        phase[0] = "drag"
        for m in range(moves):
            row.slider.setValue(2 * ((m + 1) / moves) * (1 if d % 2 == 0 else -1))
            _wait(16)
        w.result = None
        phase[0] = "release"
        t0 = time.perf_counter()
        row.committed.emit(row, before, row.slider.value())
        _wait_until(lambda: w.result is not None and not w.scheduler._running)
        release_to_result.append(time.perf_counter() - t0)
    for query in search:
        phase[0] = "search"
        w.features.search.setText(query)
        _wait(600)  # the debounce, the search off the thread, and its results shown
    heart.stop()
    _wait(500)  # let the last jobs report before the window goes
    gaps = sorted(gaps[1:])
    figures = {
        "heartbeats": len(gaps),
        "longest_gap_ms": gaps[-1],
        "p99_gap_ms": gaps[int(0.99 * (len(gaps) - 1))],
        "worst_phase": max(worst, key=worst.get),
        "worst": worst,
        "release_to_result_ms": statistics.median(release_to_result) * 1000,
        "steps": w.generation.steps.value(),
        "decoder": w.decoder_name,
    }
    w.close()
    QThreadPool.globalInstance().waitForDone(30_000)  # the jobs still running end before the window goes
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drags", type=int, default=8, help="slider drags (each ends in a release)")
    p.add_argument("--moves", type=int, default=30, help="moves per drag, 16 ms apart")
    p.add_argument("--quick", action="store_true", help="toy models instead of the shipped demo")
    a = p.parse_args()
    if not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    from editor.model import EditorModel
    from sae.assets import SAMPLES

    if a.quick:
        loader, images = _quick_loader()
    else:
        loader, images = EditorModel.demo, sorted(SAMPLES.glob("*.png"))
    f = measure(loader, images, a.drags, a.moves)
    print(
        f"heartbeats: {f['heartbeats']:,} (every 5 ms) over {a.drags} drags of {a.moves} moves and "
        f"{(a.drags + 2) // 3} image switches"
    )
    print(
        f"longest gap on the GUI thread: {f['longest_gap_ms']:.1f} ms (target <= 50 ms); "
        f"99th percentile {f['p99_gap_ms']:.1f} ms"
    )
    print("longest gap while: " + ", ".join(f"{k} {v:.1f} ms" for k, v in f["worst"].items()))
    print(
        f"slider release to finished result: median {f['release_to_result_ms']:.0f} ms "
        f"(steps {f['steps']}, decoder {f['decoder']})"
    )
    print(
        f"longest_gap_ms={f['longest_gap_ms']:.1f} p99_gap_ms={f['p99_gap_ms']:.1f} "
        f"release_to_result_ms={f['release_to_result_ms']:.0f}"
    )


if __name__ == "__main__":
    main()
