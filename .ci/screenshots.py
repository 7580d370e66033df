"""Regenerate the README's editor screenshot: the shipped demo models on a sample image, a
search, a selected feature (its heatmap, top images and causal preview) and a slider moved.

Run under a real X server so the window is drawn as people see it:
    Xvfb :99 -screen 0 1400x900x24 &  DISPLAY=:99 python .ci/screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "screenshots" / "editor.png"


def main(query: str = "cat", value: float = 2.0) -> None:
    import tempfile

    from editor.jobs import process_events_until as wait
    from editor.main_window import MainWindow

    _app = QApplication(sys.argv[:1])  # kept alive while the window runs
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1280, 760)
    window.show()
    window.open_image(ROOT / "assets" / "samples" / "cat-on-grass.png")  # as `sae-studio` does
    wait(lambda: window.model is not None and not window.loading_image, 120_000)
    wait(lambda: bool(window.sliders.rows), 30_000)  # the first-run suggestion for "cat"
    window.run_search(query)
    row = window.sliders.rows[0]
    row.slider.setValue(value * row.unit)
    row.committed.emit(row, 0.0, row.slider.value())
    window._show_latent(row.latent)
    if window.model.session.decoder is not None:
        wait(lambda: window.scheduler.wait(1) and window.result is not None, 300_000)
    wait(lambda: False, 3_000)  # let the last paint land
    OUT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT))
    print(OUT)


if __name__ == "__main__":
    main()
