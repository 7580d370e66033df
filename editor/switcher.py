"""Changing what the window paints with: another decoder (or device), another SAE folder, or an
SAE trained in the Train dialog. Loading runs off the GUI thread, and the swap waits for the
running render (``RenderScheduler.when_idle``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog

from editor.collector import while_loading
from editor.decoder_loading import DecoderLoader
from editor.download_dialog import DownloadDialog
from sae.download import HUB_PREFIX, DownloadCancelled
from sae.errors import UserError


def imported_folder(path: str | Path) -> Path:
    """Where the editor keeps the project SAE it converts ``path`` into (a new name each time)."""
    from platformdirs import user_data_path

    root = user_data_path("sae-studio") / "imported"
    stem, n = Path(path).stem if Path(path).is_file() else Path(path).name, 1
    while (root / (f"{stem}-{n}" if n > 1 else stem)).exists():
        n += 1
    return root / (f"{stem}-{n}" if n > 1 else stem)


def _import(path, out, images, backbone, download=None):
    from sae.importing import import_sae

    report, stop = (download.report, download.stop.is_set) if download is not None else (None, None)
    return import_sae(path, out, images=images, backbone=backbone, on_download=report, should_stop=stop)


class ModelSwitcher:
    def __init__(self, window):
        self.w = window
        self.train = None  # the Train dialog, once opened
        self.loading = ""  # the decoder being loaded, if any
        self.loader = DecoderLoader(window, window.jobs)
        self.loader.ready.connect(self._decoder_ready)
        self.loader.failed.connect(self._decoder_failed)
        self.loader.note.connect(lambda text: window.statusBar().showMessage(text, 8000))
        g = window.generation
        g.decoder_box.activated.connect(lambda _i: self.choose_decoder(g.decoder_box.currentData()))
        g.device_box.activated.connect(lambda _i: self.choose_decoder(window.decoder_name))

    @property
    def download_dialog(self):
        """The hub decoder's download dialog while one shows, else None."""
        return self.loader.download.dialog if self.loader.download is not None else None

    def close(self) -> None:
        if self.train is not None:
            self.train.close()

    def choose_decoder(self, name: str) -> None:
        """Load decoder ``name`` (demo, a hub name, a folder, or 'folder' to ask) on the chosen
        device in the background; the previous decoder stays until the new one is ready."""
        if self.w.model is None:
            return
        if name == "folder":
            name = QFileDialog.getExistingDirectory(self.w, "Folder with a saved diffusers pipeline")
            if not name:
                self.w.generation.show_decoder(self.w.decoder_name)
                return
        self.w.progress.setRange(0, 0)
        self.w.progress.setVisible(True)
        self.loading = name
        self.loader.load(name, self.w.model.session.backbone, self.w.generation.device_box.currentData())

    def _decoder_ready(self, name: str, decoder) -> None:
        self.loading = ""

        def swap() -> None:
            self.w.model.session.decoder = decoder
            self.w.generation.switch_decoder(name)
            self.w.generation.show_decoder(name)  # also when the settings already named it
            self.w.progress.setVisible(False)
            self.w.canvas.busy_text = ""
            self.w.statusBar().showMessage(f"Decoder: {name}", 5000)
            self.w.request_render(preview=False)

        self.w.scheduler.when_idle(swap)  # not under a render that is using the old one

    def _decoder_failed(self, message: str) -> None:
        self.loading = ""
        self.w.progress.setVisible(False)
        if self.w.model.session.decoder is None:  # e.g. the one an encoder switch asked for
            self.w.say_no_decoder()
        else:
            self.w.generation.show_decoder(self.w.decoder_name)
        if message:
            self.w.show_error(message)

    def load_sae_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self.w, "SAE folder (SAELens layout: cfg.json + sae_weights.safetensors)"
        )
        if path:
            self.load_sae(path)

    def load_sae(self, folder: str | Path) -> None:
        """Switch to the SAE in ``folder``: on the current encoder when it reads it (checked to fit
        its layer), else on the encoder it names (``EditorModel.with_sae``)."""
        if self.w.model is None:
            return
        self.w.statusBar().showMessage(f"Loading the SAE in {folder} (and its encoder, if it reads another)…")
        self.w.jobs.run(
            "sae",
            while_loading(self.w.model.with_sae),
            folder,
            done=lambda model: self.w.scheduler.when_idle(lambda: self.w.switch_model(model)),
            failed=lambda e: self.w.show_error(str(e) if isinstance(e, UserError) else f"Could not load the SAE: {e}"),
        )

    def import_sae_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.w, "Published SAE file (clip-sae-128, Prisma, saev, MSAE)", "", "SAE checkpoints (*.pt *.pth)"
        )
        if path:
            self.import_sae(path)

    def import_hub_dialog(self) -> None:
        spec, ok = QInputDialog.getText(
            self.w,
            "Import an SAE from the Hugging Face hub",
            "The SAE's folder on the hub, as hf:OWNER/REPO/FOLDER (SAELens, sparsify) or hf:OWNER/REPO "
            "(a published pickle):",
            text=HUB_PREFIX,
        )
        spec = spec.strip()
        if ok and spec.removeprefix(HUB_PREFIX):
            self.import_sae(spec if spec.startswith(HUB_PREFIX) else HUB_PREFIX + spec)

    def import_sae(self, path: str | Path, images: str | Path | None = None) -> None:
        """Convert a published SAE file (or a hub SAE, ``hf:...``, downloaded first with a dialog that
        can cancel) once into the user's data folder, as ``sae-studio import`` does, then load it. A
        file that names no encoder or layer is placed on the editor's."""
        from sae.published.saev import header_only, is_early

        hub = str(path).startswith(HUB_PREFIX)
        if self.w.model is None or (hub and self.w.jobs.busy("hub import")):
            return
        header = header_only(Path(path)) if not hub and Path(path).is_file() else None
        if images is None and header is not None and is_early(header):
            images = QFileDialog.getExistingDirectory(
                self.w, "Pictures like the SAE's training set, to estimate the input statistics it did not save"
            )
            if not images:
                return
        backbone = self.w.model.session.backbone
        out = imported_folder(path)
        download = DownloadDialog(self.w, str(path)) if hub else None
        self.w.statusBar().showMessage(f"Importing {path if hub else Path(path).name} into {out}…")

        def finished(result) -> None:
            if download is not None:
                download.close()
            if not isinstance(result, Exception):
                self._imported(result)
            elif isinstance(result, DownloadCancelled):
                self.w.statusBar().showMessage("Download cancelled; what was downloaded stays in the cache.", 8000)
            else:
                self.w.show_error(str(result) if isinstance(result, UserError) else f"Could not import: {result}")

        # a hub import is a kind of its own, so no other job supersedes it and leaves its dialog open
        kind = "hub import" if hub else "sae"
        job = while_loading(_import)
        self.w.jobs.run(kind, job, path, out, images, backbone, download, done=finished, failed=finished)

    def _imported(self, done) -> None:
        """Open the imported SAE (on the encoder it names, when that is another one)."""
        self.w.statusBar().showMessage(f"{done.summary()}. {' '.join(done.notes)}".strip(), 15000)
        self.load_sae(done.out)

    def encoder_changed(self) -> None:
        """The window now reads another encoder: a Train dialog made for the old one (and not
        training) goes, so the next one offers the new encoder's layers."""
        if self.train is not None and not self.train.running:
            self.train.close()
            self.train.deleteLater()
            self.train = None

    def train_dialog(self) -> None:
        from editor.train_dialog import TrainDialog

        if self.w.model is None:
            return
        if self.train is None:
            b = self.w.model.session.backbone
            self.train = TrainDialog(b.model_id, b.n_layers, b.layer, self.w)
            self.train.trained.connect(self.load_sae)
        self.train.show()
        self.train.raise_()
