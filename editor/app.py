"""``sae-studio`` with no command (or with an image): the desktop editor on the shipped demo models."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

EXIT_WAIT_MS = 5000  # how long a closed editor waits for its running jobs


def import_libraries(say: Callable[[str], None] = lambda text: None) -> None:
    """Import torch, open_clip and diffusers on the GUI thread, before the window exists. Imported
    by a loading thread while the window runs, their ~4,600 modules held the GIL in stretches that
    stalled the window; here nothing but the splash screen waits, and the same seconds are spent."""
    say("Loading torch and open_clip…")
    import editor.main_window  # noqa: F401 (torch and open_clip come with the window's modules)

    say("Loading diffusers…")
    from sae.decoders.registry import import_pipelines

    import_pipelines()


def show_splash():
    """A splash screen shown at once, with a line saying what is loading."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPainter, QPixmap
    from PySide6.QtWidgets import QApplication, QSplashScreen

    pixmap = QPixmap(460, 160)
    pixmap.fill(QColor("#24292f"))
    painter = QPainter(pixmap)
    font = painter.font()
    font.setPointSize(24)
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor("white"))
    painter.drawText(pixmap.rect().adjusted(0, 0, 0, -50), Qt.AlignmentFlag.AlignCenter, "sae-studio")
    font.setPointSize(11)
    font.setBold(False)
    painter.setFont(font)
    painter.setPen(QColor("#8b949e"))
    painter.drawText(
        pixmap.rect().adjusted(0, 40, 0, -30), Qt.AlignmentFlag.AlignCenter, "edit images through an SAE's features"
    )
    painter.end()
    splash = QSplashScreen(pixmap)
    splash.show()
    QApplication.processEvents()
    return splash


def run(image: str | None = None, sae: str | None = None) -> int:
    """The editor on the demo models, or on the SAE in folder ``sae`` and its own encoder."""
    from PySide6.QtCore import Qt, QThreadPool
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("sae-studio")
    app.setOrganizationName("sae-studio")
    splash = show_splash()

    def say(text: str) -> None:
        splash.showMessage(text, Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter, QColor("#c9d1d9"))
        app.processEvents()

    import_libraries(say)
    from editor.main_window import MainWindow
    from editor.model import EditorModel

    window = MainWindow() if sae is None else MainWindow(lambda: EditorModel.open(sae))
    window.show()
    splash.finish(window)
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
