"""Regenerate the README's editor screenshot: the shipped demo models on a sample image, a
search, a selected feature (its heatmap, top images and causal preview) and a slider moved.

Run under a real X server so the window is drawn as people see it:
    Xvfb :99 -screen 0 1400x900x24 &  DISPLAY=:99 python .ci/screenshots.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "screenshots" / "editor.png"


def wait(app: QApplication, seconds: float, until=lambda: False) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        app.processEvents()
        time.sleep(0.02)


def main(query: str = "cat", value: float = 2.0) -> None:
    import tempfile

    from editor.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(1280, 760)
    window.show()
    window.open_image(ROOT / "assets" / "samples" / "cat-on-grass.png")  # as `sae-studio` does
    wait(app, 120, lambda: window.model is not None and not window.loading_image)
    wait(app, 30, lambda: bool(window.sliders.rows))  # the first-run suggestion for "cat"
    window.run_search(query)
    row = window.sliders.rows[0]
    row.slider.setValue(value * row.unit)
    row.committed.emit(row, 0.0, row.slider.value())
    window._show_latent(row.latent)
    if window.model.session.decoder is not None:
        wait(app, 300, lambda: window.scheduler.wait(1) and window.result is not None)
    wait(app, 3)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT))
    print(OUT)


if __name__ == "__main__":
    main()
