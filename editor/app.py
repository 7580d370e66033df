"""``sae-studio`` with no command (or with an image): the desktop editor on the shipped demo models."""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_WAIT_MS = 5000  # how long a closed editor waits for its running jobs


def run(image: str | None = None, sae: str | None = None) -> int:
    """The editor on the demo models, or on the SAE in folder ``sae`` and its own encoder."""
    from PySide6.QtCore import QThreadPool
    from PySide6.QtWidgets import QApplication

    from editor.main_window import MainWindow
    from editor.model import EditorModel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("sae-studio")
    app.setOrganizationName("sae-studio")
    window = MainWindow() if sae is None else MainWindow(lambda: EditorModel.open(sae))
    window.show()
    if image is None:
        from sae.assets import SAMPLES

        sample = SAMPLES / "cat-on-grass.png"
        image = str(sample) if sample.is_file() else None
    if image is not None:
        window.open_image(Path(image))
    code = app.exec()
    # Jobs still running (a search, a decode stopping at its next step) finish before Qt goes away.
    QThreadPool.globalInstance().waitForDone(EXIT_WAIT_MS)
    return code
