"""A cancellable dialog that follows a hub download reported from a worker thread: a hub decoder's
first download, an SAE fetched for *Import SAE from the hub…*."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget


class DownloadDialog(QObject):
    _progress = Signal("qlonglong", "qlonglong")  # bytes so far, bytes expected (0: not known)

    def __init__(self, parent: QWidget, what: str):
        super().__init__(parent)
        self.what = what
        self.stop = threading.Event()  # set by Cancel; the download stops at its next chunk
        self.dialog = QProgressDialog(f"Downloading {what} into the Hugging Face cache (once)…", "Cancel", 0, 0, parent)
        self.dialog.setWindowTitle("Downloading")
        self.dialog.setMinimumDuration(0)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.canceled.connect(self.stop.set)
        self._progress.connect(self._show)
        self.dialog.show()

    def report(self, done: int, total: int) -> None:
        """``done`` of ``total`` bytes, from any thread."""
        self._progress.emit(done, total)

    def _show(self, done: int, total: int) -> None:
        if total > 0:
            self.dialog.setMaximum(1000)
            self.dialog.setValue(min(999, int(1000 * done / total)))
        unit, scale = ("GB", 1e9) if max(done, total) >= 1e9 else ("MB", 1e6)
        size = f"{done / scale:,.2f}" if unit == "GB" else f"{done / scale:,.0f}"
        size += f" of ~{total / scale:,.1f} {unit}" if total > 0 else f" {unit}"
        self.dialog.setLabelText(f"Downloading {self.what} into the Hugging Face cache (once): {size}")

    def close(self) -> None:
        """Closes the dialog. The object stays (with its window) so that a download superseded and
        still running reports into it harmlessly."""
        self.dialog.close()
