"""Loading a decoder off the GUI thread, with a cancellable progress dialog while a hub decoder
downloads into the Hugging Face cache (once)."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from editor.collector import while_loading
from sae.download import DownloadCancelled
from sae.errors import UserError


class DecoderLoader(QObject):
    ready = Signal(str, object)  # name, decoder
    failed = Signal(str)  # one sentence ("" when the user cancelled a download)
    note = Signal(str)  # what is happening, for the status bar
    _progress = Signal("qlonglong", "qlonglong")  # bytes so far, bytes expected (from the loading thread)

    def __init__(self, parent: QWidget, jobs):
        super().__init__(parent)
        self._parent, self._jobs = parent, jobs
        self.dialog: QProgressDialog | None = None
        self._progress.connect(self._show_download)

    def load(self, name: str, backbone, device: str) -> None:
        from sae.decoders.registry import download_note

        self._close_dialog()  # a download still asked for is superseded by this one
        note = download_note(name)
        self.note.emit(f"Loading the {name} decoder on {device}…" + (f" First use: {note}" if note else ""))
        stop = threading.Event()
        if note:
            self.dialog = QProgressDialog(
                f"Downloading the {name} decoder into the Hugging Face cache (once)…", "Cancel", 0, 1000, self._parent
            )
            self.dialog.setWindowTitle("Downloading")
            self.dialog.setMinimumDuration(0)
            self.dialog.setAutoClose(False)
            self.dialog.setAutoReset(False)
            self.dialog.canceled.connect(stop.set)
            self._name = name

        def load():
            from sae.decoders.registry import load_decoder

            return load_decoder(name, backbone, device=device, on_download=self._progress.emit, should_stop=stop.is_set)

        def done(decoder) -> None:
            self._close_dialog()
            self.ready.emit(name, decoder)

        def failed(error: Exception) -> None:
            self._close_dialog()
            self._failed(error)

        self._jobs.run("decoder", while_loading(load), done=done, failed=failed)

    def _show_download(self, done: int, total: int) -> None:
        if self.dialog is None:
            return
        if total > 0:
            self.dialog.setValue(min(999, int(1000 * done / total)))
        self.dialog.setLabelText(
            f"Downloading the {self._name} decoder into the Hugging Face cache (once): "
            f"{done / 1e9:.2f} of ~{total / 1e9:.1f} GB"
        )

    def _close_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.close()
            self.dialog = None

    def _failed(self, error: Exception) -> None:
        if isinstance(error, DownloadCancelled):
            self.note.emit("Download cancelled; what was downloaded stays in the cache and resumes next time.")
            self.failed.emit("")
            return
        self.failed.emit(str(error) if isinstance(error, UserError) else f"Could not load the decoder: {error}")
