"""Loading a decoder off the GUI thread, with a cancellable progress dialog while a hub decoder
downloads into the Hugging Face cache (once)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from editor.collector import while_loading
from editor.download_dialog import DownloadDialog
from sae.download import DownloadCancelled
from sae.errors import UserError


class DecoderLoader(QObject):
    ready = Signal(str, object)  # name, decoder
    failed = Signal(str)  # one sentence ("" when the user cancelled a download)
    note = Signal(str)  # what is happening, for the status bar

    def __init__(self, parent: QWidget, jobs):
        super().__init__(parent)
        self._parent, self._jobs = parent, jobs
        self.download: DownloadDialog | None = None

    def load(self, name: str, backbone, device: str) -> None:
        from sae.decoders.registry import download_note

        self._close_dialog()  # a download still asked for is superseded by this one
        note = download_note(name)
        self.note.emit(f"Loading the {name} decoder on {device}…" + (f" First use: {note}" if note else ""))
        download = self.download = DownloadDialog(self._parent, f"the {name} decoder") if note else None
        report, stop = (download.report, download.stop.is_set) if download is not None else (None, None)

        def load():
            from sae.decoders.registry import load_decoder

            return load_decoder(name, backbone, device=device, on_download=report, should_stop=stop)

        def done(decoder) -> None:
            self._close_dialog()
            self.ready.emit(name, decoder)

        def failed(error: Exception) -> None:
            self._close_dialog()
            self._failed(error)

        self._jobs.run("decoder", while_loading(load), done=done, failed=failed)

    def _close_dialog(self) -> None:
        if self.download is not None:
            self.download.close()
            self.download = None

    def _failed(self, error: Exception) -> None:
        if isinstance(error, DownloadCancelled):
            self.note.emit("Download cancelled; what was downloaded stays in the cache and resumes next time.")
            self.failed.emit("")
            return
        self.failed.emit(str(error) if isinstance(error, UserError) else f"Could not load the decoder: {error}")
