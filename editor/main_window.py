"""The main window: canvas in the middle, features on the left, sliders and generation settings on the right."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QSettings, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QInputDialog,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QSpinBox,
    QWidget,
)
from superqt.utils import create_worker

from editor.canvas import BeforeAfterView
from editor.features import FeaturePanel
from editor.jobs import PreviewThrottle, RenderScheduler
from editor.model import EditorModel
from editor.sliders import SliderPanel, SliderRow
from sae import presets
from sae.decoders import DECODERS, DecodeSettings, default_steps, default_strength
from sae.device import available_devices
from sae.download import DownloadCancelled
from sae.errors import UserError
from sae.images import IMAGE_SUFFIXES, load_image
from sae.induce import MIN_POSITIVES, InducedSlider
from sae.png import preset_in, save_with_preset
from sae.session import PREVIEW_STRENGTH, PREVIEW_UNITS

PREVIEW_STEPS = 4
NO_DECODER = "no decoder loaded: choose one under Generation ▸ Decoder"
FIRST_RUN_SLIDER = "cat"  # the feature a newcomer finds as a slider on the sample image

# Settings each decoder keeps its own of (the Generation panel's widget of that name, and the
# decoder's default): a demo-sized step count is far too few for Kandinsky, Kandinsky's makes the
# demo slow, and the demo decoder edits best at a higher strength than the hub ones.
PER_DECODER = {"steps": default_steps, "strength": default_strength}


class _Move(QUndoCommand):
    def __init__(self, window: MainWindow, latent: int, before: float, after: float):
        super().__init__(f"move slider #{latent}")
        self.w, self.latent, self.before, self.after = window, latent, before, after
        self._first = True

    def _set(self, value: float) -> None:
        row = self.w.sliders.row_for(self.latent)
        if row is not None:
            row.set_value(value, quiet=True)
            self.w.request_render(preview=False)

    def redo(self) -> None:
        if self._first:  # the slider already shows the new value
            self._first = False
            return
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)


class _AddRemove(QUndoCommand):
    def __init__(self, window: MainWindow, latent: int, adding: bool, value: float = 0.0, mode: str = "add"):
        super().__init__(("add" if adding else "remove") + f" slider #{latent}")
        self.w, self.latent, self.adding, self.value, self.mode = window, latent, adding, value, mode
        self.tokens: str | None = None  # None: where the latent fires (a new slider's choice)

    def _add(self) -> None:
        row = self.w._make_row(self.latent)
        row.set_mode(self.mode)
        row.set_value(self.value, quiet=True)
        if self.tokens is not None:
            row.set_tokens(self.tokens)
        self.w.request_render(preview=False)

    def _remove(self) -> None:
        row = self.w.sliders.row_for(self.latent)
        if row is not None:
            self.value, self.mode, self.tokens = row.slider.value(), row.mode.currentText(), row.token_choice()
            self.w.sliders.remove(row)

    def redo(self) -> None:
        self._add() if self.adding else self._remove()

    def undo(self) -> None:
        self._remove() if self.adding else self._add()


class _Mask(QUndoCommand):
    def __init__(self, window: MainWindow, latent: int, before: tuple | None, after: tuple | None):
        super().__init__(f"paint region of #{latent}")
        self.w, self.latent, self.before, self.after = window, latent, before, after

    def _set(self, mask) -> None:
        row = self.w.sliders.row_for(self.latent)
        if row is not None:
            row.set_mask(mask)
            if self.w.sliders.selected is row:
                self.w.canvas.mask = set(mask or ())
                self.w.canvas.update()
            self.w.request_render(preview=False)

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)


class _DownloadBridge(QObject):
    """Carries a download's progress from the loading thread to the dialog (a queued signal)."""

    progress = Signal("qlonglong", "qlonglong")  # bytes so far, bytes expected


def _show_download(dialog: QProgressDialog, name: str, done: int, total: int) -> None:
    if total > 0:
        dialog.setValue(min(999, int(1000 * done / total)))
    dialog.setLabelText(f"Downloading the {name} decoder into the Hugging Face cache (once): "
                        f"{done / 1e9:.2f} of ~{total / 1e9:.1f} GB")


class MainWindow(QMainWindow):
    def __init__(self, load_model: Callable[[], EditorModel] = EditorModel.demo, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("sae-studio")
        self.resize(1280, 760)
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("sae-studio", "sae-studio")
        self.model: EditorModel | None = None
        self.result: Image.Image | None = None
        self.image_path: Path | None = None
        self.undo = QUndoStack(self)
        self.canvas = BeforeAfterView()
        self.setCentralWidget(self.canvas)
        self.features = FeaturePanel()
        self.sliders = SliderPanel()
        self._docks()
        self._menus()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.scheduler = RenderScheduler(lambda: self.model.session if self.model else None, self)
        self.scheduler.progress.connect(self._progress)
        self.scheduler.finished.connect(self._rendered)
        self.scheduler.failed.connect(lambda _j, msg: self.show_error(msg))
        self.scheduler.causal_ready.connect(self.features.show_causal)
        self.scheduler.image_ready.connect(self._image_ready)
        self.loading_image = False
        self._image_job = 0
        self._caption = (0, "edited")  # (render job id, what the right pane shows when it arrives)
        self._carried = (None, "")
        self._suggest_on_image = ""  # a search whose best slider is added when the image is read
        self.inducing = False
        self.download_dialog: QProgressDialog | None = None
        self.features.add_requested.connect(self.add_slider)
        self.features.rename_requested.connect(self.rename_feature)
        self.features.search_changed.connect(self.run_search)
        self.features.latent_selected.connect(self._show_latent)
        self.throttle = PreviewThrottle(lambda: self.request_render(preview=True), lambda: self.scheduler.busy, self)
        self.sliders.edits_changed.connect(self._edits_changed)
        self.sliders.committed.connect(lambda row, a, b: self.undo.push(_Move(self, row.latent, a, b)))
        self.sliders.selected_changed.connect(self._selected_row)
        self.canvas.mask_painted.connect(self._painted)
        self.statusBar().showMessage("Loading models…")
        self._loader = create_worker(load_model, _start_thread=False, _ignore_errors=True)
        self._loader.returned.connect(self._model_ready)
        self._loader.errored.connect(lambda e: self.show_error(f"Could not load the models: {e}"))
        self._pending_image: Path | None = None
        self._train = None
        self._loading = None
        self._loader.start()

    # -- layout -------------------------------------------------------------------------------
    def _docks(self) -> None:
        left = QDockWidget("Features", self)
        left.setWidget(self.features)
        left.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
        right = QDockWidget("Sliders", self)
        right.setWidget(self.sliders)
        right.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, right)
        gen = QWidget()
        form = QFormLayout(gen)
        self.steps = QSpinBox(minimum=1, maximum=200, value=self._saved("steps", "demo"))
        self.steps.setToolTip("Denoising steps; each decoder keeps its own (the demo's default is 8)")
        self.strength = QDoubleSpinBox(minimum=0.05, maximum=1.0, singleStep=0.05, value=self._saved("strength", "demo"))
        self.strength.setToolTip("img2img strength: how far the decoder may move from the input; each decoder keeps its own "
                                 "(the demo's default is 0.9)")
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=20.0, singleStep=0.5, value=float(self.settings.value("guidance", 3.0)))
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=int(self.settings.value("seed", 0)))
        self.lock_seed = QCheckBox("lock seed", checked=self.settings.value("lock_seed", "true") in ("true", True))
        self.keep_rest = QCheckBox("repaint only what the edit changes", checked=self.settings.value("region", "edited") != "whole")
        self.keep_rest.setToolTip("On: the decoder repaints the region where the edit changes its prediction and keeps the "
                                  "rest of the image as it is (an image with no edit comes back unchanged). Off: it repaints "
                                  "the whole image at the chosen strength. The SD 2.1 unCLIP decoder always repaints the whole image.")
        self.decoder_box = QComboBox()
        for entry in DECODERS.values():
            self.decoder_box.addItem(entry.label, entry.name)
        self.decoder_box.addItem("Pipeline folder…", "folder")
        self.decoder_box.setToolTip("The diffusion decoder that paints the edited embedding")
        self.device_box = QComboBox()
        for dev in available_devices():
            self.device_box.addItem(dev, dev)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(self.settings.value("device", "cpu"))))
        self.decoder_box.activated.connect(lambda _i: self.choose_decoder(self.decoder_box.currentData()))
        self.device_box.activated.connect(lambda _i: self.choose_decoder(self.decoder_name))
        self.decoder_name = "demo"
        form.addRow("Decoder", self.decoder_box)
        form.addRow("Decoder device", self.device_box)
        form.addRow("Steps", self.steps)
        form.addRow("Strength", self.strength)
        form.addRow("Guidance", self.guidance)
        form.addRow("Seed", self.seed)
        form.addRow("", self.lock_seed)
        form.addRow("", self.keep_rest)
        self.keep_rest.toggled.connect(lambda _on: self.request_render(preview=False))
        for w in (self.steps, self.seed):
            w.valueChanged.connect(lambda _v: self.request_render(preview=False))
        for w in (self.strength, self.guidance):
            w.valueChanged.connect(lambda _v: self.request_render(preview=False))
        dock = QDockWidget("Generation", self)
        dock.setWidget(gen)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self._action(m, "&Open image…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = m.addMenu("Open &recent")
        self._refresh_recent()
        self._action(m, "&Save result…", self.save_dialog, QKeySequence.StandardKey.Save)
        m.addSeparator()
        self._action(m, "&Export preset…", self.export_dialog, "Ctrl+E")
        self._action(m, "&Import preset…", self.import_dialog, "Ctrl+I")
        m.addSeparator()
        self._action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        e = self.menuBar().addMenu("&Edit")
        undo = self.undo.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence("Ctrl+Z"))
        redo = self.undo.createRedoAction(self, "&Redo")
        redo.setShortcut(QKeySequence("Ctrl+Shift+Z"))
        e.addAction(undo)
        e.addAction(redo)
        e.addSeparator()
        self._action(e, "Reset all sliders", self.sliders.reset_all)
        self._action(e, "&Induce slider from examples…", self.induce_dialog, "Ctrl+Shift+I")
        v = self.menuBar().addMenu("&View")
        self._action(v, "Toggle &before/after split", self.canvas.toggle_split, "B")
        self._action(v, "Show/hide the selected feature's &heatmap", self.canvas.toggle_heatmap, "H")
        self.brush_action = self._action(v, "&Region brush for the selected slider", self.toggle_brush, "R")
        self.brush_action.setCheckable(True)
        self._action(v, "&Clear the selected slider's region", self.clear_mask, "Shift+R")
        mm = self.menuBar().addMenu("&Models")
        self._action(mm, "&Load SAE folder…", self.load_sae_dialog, "Ctrl+L")
        self._action(mm, "&Train SAE…", self.train_dialog, "Ctrl+T")

    # -- models and images --------------------------------------------------------------------
    def _model_ready(self, model: EditorModel) -> None:
        self.model = model
        has_decoder = model.session.decoder is not None
        self.statusBar().showMessage("Models ready." + ("" if has_decoder else " No decoder: the edited image cannot be painted."), 5000)
        if not has_decoder:
            self.canvas.busy_text = NO_DECODER
            self.canvas.update()
        saved = self.settings.value("decoder", "demo")
        if saved != "demo" or self.device_box.currentData() != "cpu":
            self.choose_decoder(saved)
        if self._pending_image is not None:
            self.open_image(self._pending_image)
            if not self.settings.value("first_run_done", False):
                self._suggest_on_image = FIRST_RUN_SLIDER  # once the image's code is known
                self.settings.setValue("first_run_done", True)

    def suggest_slider(self, query: str) -> None:
        """Put ``query`` in the search box and add a slider (at zero) for its best match, preferring
        one that fires on the open image: the strongest-firing latent labelled ``query``, else the
        first of the top five hits that fires. Its marker then shows where the image stands, and
        dragging it down removes what it found as well as dragging it up adds."""
        self.features.search.setText(query)
        try:
            hits = self.model.search(query, top=5)
        except UserError:
            return
        if not hits:
            return
        has_image = self.image_path is not None and not self.loading_image
        named = [f for f in self.model.session.fires(20) if f.label.strip().lower() == query.lower()] if has_image else []
        firing = [h for h in hits if has_image and self.model.current_activation(h.latent) > 0]
        best = (named or firing or hits)[0]
        self.add_slider(best.latent)
        self.statusBar().showMessage(f"Try the “{best.label}” slider on the right: drag it to edit.", 10000)

    def open_image(self, path: str | Path) -> None:
        path = Path(path)
        if self.model is None:
            self._pending_image = path
            return
        try:
            image = load_image(path)
        except UserError as e:
            self.show_error(str(e))
            return
        carried = None
        if path.suffix.lower() == ".png":
            try:
                carried = preset_in(path)
            except UserError as e:
                self.show_error(str(e))
        self.image_path = path
        self.canvas.set_before(image)
        self.canvas.view = None  # until the encoder has read the image
        self.canvas.set_heatmap(None, "")
        self.canvas.busy_text = "reading the image…"
        self._remember(path)
        self.statusBar().showMessage(f"Opening {path.name}…")
        self.loading_image = True
        self._carried = (carried, path.name)
        self._image_job = self.scheduler.request_image(image)

    def _image_ready(self, job_id: int) -> None:
        if job_id != self._image_job:
            return  # a newer image is on its way
        self.loading_image = False
        session = self.model.session
        self.canvas.view = session.view()
        self.features.show_fires(session.fires(20))
        self.features.show_coverage(*self.model.coverage_text())
        for row in self.sliders.rows:
            row.set_current(self.model.current_activation(row.latent))
        carried, name = self._carried
        size_note = session.decoder.sizes.canvas(*session.current.image.size).note() if session.decoder else None
        self.statusBar().showMessage(f"Opened {name}" + (f". {size_note}" if size_note else ""), 10000 if size_note else 4000)
        if self.model.session.decoder is None:
            self.canvas.busy_text = NO_DECODER
            self.canvas.update()
        if self._suggest_on_image:
            self.suggest_slider(self._suggest_on_image)
            self._suggest_on_image = ""
        if carried is not None:
            self.apply_preset(carried, f"The preset inside {name}")
        else:
            self.request_render(preview=False)

    def show_error(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "sae-studio", message, QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.show()
        self._last_error = message

    # -- sliders ------------------------------------------------------------------------------
    def _make_row(self, latent: int) -> SliderRow:
        m = self.model
        row = self.sliders.add(latent, m.label(latent), m.unit(latent), m.current_activation(latent))
        if latent in m.induced:
            row.make_induced(m.induced[latent].weights)
        row.set_tokens(m.home_tokens(latent))
        only = m.only_tokens()
        if only is not None:
            row.fix_tokens(*only)
        return row

    def add_slider(self, latent: int) -> None:
        if self.model is None or self.sliders.row_for(latent) is not None:
            return
        self.undo.push(_AddRemove(self, latent, adding=True))

    def induce_dialog(self) -> None:
        if self.model is None:
            return
        files, _ = QFileDialog.getOpenFileNames(self, "Example images that show the concept (3 to 20)", "",
                                                "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ")")
        if files:
            self.ask_to_induce(files)

    def ask_to_induce(self, files: list[str | Path]) -> None:
        name, ok = QInputDialog.getText(self, "Induce a slider", f"Name the concept these {len(files)} images show:")
        if ok and name.strip():
            self.induce_slider(files, name.strip())

    def induce_slider(self, examples: list[str | Path], name: str, negatives: list[str | Path] | None = None) -> None:
        """Find the slider on a worker thread, then add it (undoable) like a latent's."""
        if self.model is None:
            return
        model = self.model
        self.statusBar().showMessage(f"Inducing “{name}” from {len(examples)} examples…")
        self.inducing = True
        worker = create_worker(model.induce, list(examples), name, negatives, _start_thread=False, _ignore_errors=True)

        def done(slider) -> None:
            if self.model is not model:
                return  # the SAE changed meanwhile
            key = model.add_induced(slider)
            self.undo.push(_AddRemove(self, key, adding=True, value=1.0))
            self.statusBar().showMessage(f"Added the induced slider “{slider.name}” ({len(slider.weights)} latents).", 8000)

        worker.returned.connect(done)
        worker.errored.connect(lambda e: self.show_error(str(e) if isinstance(e, UserError) else f"Inducing failed: {e}"))
        worker.finished.connect(lambda: setattr(self, "inducing", False))
        self._inducer = worker
        worker.start()

    def remove_slider(self, row: SliderRow) -> None:
        self.undo.push(_AddRemove(self, row.latent, adding=False))

    def rename_feature(self, latent: int, label: str) -> None:
        try:
            self.model.rename(latent, label)
        except UserError as e:
            self.show_error(str(e))
            return
        row = self.sliders.row_for(latent)
        if row is not None:
            row.label = label
        if self.model.session.current is not None:
            self.features.show_fires(self.model.session.fires(20))
        self.statusBar().showMessage(f"Latent #{latent} is now “{label}”", 4000)

    def run_search(self, query: str) -> None:
        if self.model is None:
            return
        try:
            self.features.show_results(self.model.search(query))
        except UserError as e:
            self.statusBar().showMessage(str(e), 8000)

    def _show_latent(self, latent: int) -> None:
        if self.model is None:
            return
        self.features.show_top_images(latent, self.model.top_thumbnails(latent))
        session = self.model.session
        if session.current is not None and session.backbone.n_patches:
            self.canvas.set_heatmap(session.heatmap(latent).tolist(), f"#{latent} {self.model.label(latent)}",
                                    whole=self.model.current_activation(latent))
        if session.decoder is None:
            self.features.causal_title.setText(f"#{latent} on its own: needs a decoder (Generation ▸ Decoder)")
        else:
            self.features.causal_pending(latent)
            settings = self.decode_settings().but(strength=PREVIEW_STRENGTH, region="edited")
            self.scheduler.request_causal(latent, PREVIEW_UNITS * self.model.unit(latent), settings,
                                          self.model.home_tokens(latent))

    def _selected_row(self, row: SliderRow | None) -> None:
        self.canvas.mask = set(row.mask or ()) if row is not None else set()
        self.canvas.update()

    def toggle_brush(self) -> None:
        self.canvas.brush = self.brush_action.isChecked() and self.sliders.selected is not None
        if self.brush_action.isChecked() and self.sliders.selected is None:
            self.brush_action.setChecked(False)
            self.statusBar().showMessage("Select a slider first: the brush paints where that slider acts.", 5000)
        self.canvas.update()

    def _painted(self, patch: int) -> None:
        row = self.sliders.selected
        if row is None:
            return
        before = row.mask
        after = tuple(sorted(set(before or ()) | {patch}))
        self.undo.push(_Mask(self, row.latent, before, after))

    def clear_mask(self) -> None:
        row = self.sliders.selected
        if row is not None and row.mask is not None:
            self.undo.push(_Mask(self, row.latent, row.mask, None))

    # -- rendering ----------------------------------------------------------------------------
    def decode_settings(self, preview: bool = False) -> DecodeSettings:
        steps = min(PREVIEW_STEPS, self.steps.value()) if preview else self.steps.value()
        return DecodeSettings(steps, self.strength.value(), self.guidance.value(), self.seed.value(), self.region(),
                              self.decoder_name)

    def region(self) -> str:
        return "edited" if self.keep_rest.isChecked() else "whole"

    def request_render(self, preview: bool = False) -> None:
        if (self.model is None or self.model.session.current is None or self.model.session.decoder is None
                or self.loading_image):
            return
        if not self.lock_seed.isChecked() and not preview:
            self.seed.blockSignals(True)
            self.seed.setValue((self.seed.value() * 1103515245 + 12345) % 2**31)
            self.seed.blockSignals(False)
        self.canvas.busy_text = "preview…" if preview else "rendering…"
        self.canvas.update()
        edits = self.sliders.edits()
        job = self.scheduler.request(edits, self.decode_settings(preview), preview)
        # At zero sliders the right pane is the decoder's round trip, which differs from the input
        # (the demo decoder blurs fine detail): say so, so nobody reads it as an edit.
        unedited = all(e.mode == "add" and e.value == 0 for e in edits)
        self._caption = (job, "decoded, no edits (what the decoder keeps)" if unedited else "edited")

    def _progress(self, job_id: int, step: int, total: int) -> None:
        if job_id == self.scheduler.latest:
            self.progress.setVisible(step < total)
            self.progress.setRange(0, total)
            self.progress.setValue(step)

    def _edits_changed(self, dragging: bool) -> None:
        """Where a slider value travels first: a drag asks for throttled previews, the rest
        (release, reset, mode, remove) for the full render at once."""
        if dragging:
            self.throttle.poke()
        else:
            self.throttle.cancel()
            self.request_render(preview=False)

    def _rendered(self, job_id: int, image: Image.Image) -> None:
        if self.scheduler.last_preview_ms:
            self.throttle.measured(self.scheduler.last_preview_ms)
        self.result = image
        self.canvas.busy_text = ""
        self.canvas.after_caption = self._caption[1] if job_id == self._caption[0] else "edited"
        self.canvas.set_after(image)
        self.progress.setVisible(False)

    # -- decoders and SAEs ------------------------------------------------------------------------
    def choose_decoder(self, name: str) -> None:
        """Load decoder ``name`` (demo, a hub name, a folder, or 'folder' to ask) on the chosen
        device in the background; the previous decoder stays until the new one is ready."""
        if self.model is None:
            return
        if name == "folder":
            name = QFileDialog.getExistingDirectory(self, "Folder with a saved diffusers pipeline")
            if not name:
                self._show_decoder(self.decoder_name)
                return
        device = self.device_box.currentData()
        backbone = self.model.session.backbone
        from sae.decoders.registry import download_note

        note = download_note(name)
        self.statusBar().showMessage(f"Loading the {name} decoder on {device}…" + (f" First use: {note}" if note else ""))
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        stop = threading.Event()
        bridge = _DownloadBridge(self)
        if note:
            dialog = QProgressDialog(f"Downloading the {name} decoder into the Hugging Face cache (once)…",
                                     "Cancel", 0, 1000, self)
            dialog.setWindowTitle("Downloading")
            dialog.setMinimumDuration(0)
            dialog.setAutoClose(False)
            dialog.setAutoReset(False)
            dialog.canceled.connect(stop.set)
            bridge.progress.connect(lambda done, total, d=dialog: _show_download(d, name, done, total))
            self.download_dialog = dialog

        def load():
            from sae.decoders.registry import load_decoder

            return load_decoder(name, backbone, device=device, on_download=bridge.progress.emit, should_stop=stop.is_set)

        self._loading = create_worker(load, _start_thread=False, _ignore_errors=True)
        self._loading.returned.connect(lambda dec, name=name: self._decoder_ready(name, dec))
        self._loading.errored.connect(self._decoder_failed)
        self._loading.finished.connect(self._close_download_dialog)
        self._loading.start()

    def _close_download_dialog(self) -> None:
        if self.download_dialog is not None:
            self.download_dialog.close()
            self.download_dialog = None

    def _decoder_ready(self, name: str, decoder) -> None:
        self.scheduler.wait(30_000)
        self.model.session.decoder = decoder
        if name != self.decoder_name:
            self._keep_per_decoder()
            with QSignalBlocker(self.steps), QSignalBlocker(self.strength):
                for key in PER_DECODER:
                    getattr(self, key).setValue(self._saved(key, name))
        self.decoder_name = name
        self._show_decoder(name)
        self.progress.setVisible(False)
        self.canvas.busy_text = ""
        self.statusBar().showMessage(f"Decoder: {name}", 5000)
        self.request_render(preview=False)

    def _decoder_failed(self, error: Exception) -> None:
        self.progress.setVisible(False)
        self._show_decoder(self.decoder_name)
        if isinstance(error, DownloadCancelled):
            self.statusBar().showMessage("Download cancelled; what was downloaded stays in the cache and resumes next time.", 8000)
            return
        self.show_error(str(error) if isinstance(error, UserError) else f"Could not load the decoder: {error}")

    def _show_decoder(self, name: str) -> None:
        i = self.decoder_box.findData(name)
        if i < 0:
            self.decoder_box.addItem(Path(name).name, name)
            i = self.decoder_box.count() - 1
        self.decoder_box.setCurrentIndex(i)

    def load_sae_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "SAE folder (SAELens layout: cfg.json + sae_weights.safetensors)")
        if path:
            self.load_sae(path)

    def load_sae(self, folder: str | Path) -> None:
        """Switch to the SAE in ``folder`` on the current encoder (checked to fit its layer)."""
        if self.model is None:
            return
        old = self.model

        def load():
            return old.with_sae(folder)

        self.statusBar().showMessage(f"Loading the SAE in {folder}…")
        self._loading = create_worker(load, _start_thread=False, _ignore_errors=True)
        self._loading.returned.connect(self._sae_ready)
        self._loading.errored.connect(
            lambda e: self.show_error(str(e) if isinstance(e, UserError) else f"Could not load the SAE: {e}"))
        self._loading.start()

    def _sae_ready(self, model: EditorModel) -> None:
        self.scheduler.wait(30_000)
        image = self.model.session.current.image if self.model.session.current is not None else None
        self.model = model
        self.undo.clear()
        for row in list(self.sliders.rows):
            self.sliders.remove(row)
        self.features.show_results([])
        self.canvas.set_heatmap(None, "")
        if image is not None:
            self.loading_image = True
            self._carried = (None, self.image_path.name if self.image_path else "the image")
            self._image_job = self.scheduler.request_image(image)
        self.statusBar().showMessage(f"SAE: {model.sae_folder} ({model.session.sae.d_sae:,} latents)", 8000)

    def train_dialog(self) -> None:
        from editor.train_dialog import TrainDialog

        if self.model is None:
            return
        if self._train is None:
            b = self.model.session.backbone
            self._train = TrainDialog(b.model_id, b.n_layers, b.layer, self)
            self._train.trained.connect(self.load_sae)
        self._train.show()
        self._train.raise_()

    # -- files --------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in IMAGE_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", f"Images ({pattern})")
        if path:
            self.open_image(path)

    def save_dialog(self) -> None:
        if self.result is None:
            self.show_error("There is no edited image to save yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save result", "edited.png", "PNG (*.png)")
        if path:
            self.save_result(path)

    def save_result(self, path: str | Path) -> None:
        save_with_preset(self.result, path, self.current_preset())
        self.statusBar().showMessage(f"Saved {Path(path).name} (with its preset inside)", 5000)

    def current_preset(self) -> presets.Preset:
        return self.model.workspace.preset(self.sliders.edits(), self.decode_settings())

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export preset", "preset.json", "Preset (*.json)")
        if path:
            self.current_preset().save(path)
            self.statusBar().showMessage(f"Exported {Path(path).name}", 5000)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import preset", "", "Preset (*.json)")
        if path:
            self.import_preset(path)

    def import_preset(self, path: str | Path) -> None:
        try:
            preset = presets.load(path)
        except UserError as e:
            self.show_error(str(e))
            return
        self.apply_preset(preset, f"Preset {Path(path).name}")

    def apply_preset(self, preset: presets.Preset, source: str) -> None:
        try:
            self.model.workspace.check_preset(preset, source)
        except UserError as e:
            self.show_error(str(e))
            return
        self.undo.clear()
        for row in list(self.sliders.rows):
            self.sliders.remove(row)
        for e in preset.edits:
            if e.weights is not None:
                row = self._make_row(self.model.add_induced(InducedSlider(e.label, e.weights)))
            else:
                row = self.sliders.row_for(e.latent) or self._make_row(e.latent)
            row.set_mode(e.mode)
            row.set_value(e.value, quiet=True)
            row.set_tokens(e.tokens)
            row.set_mask(e.mask)
        d = preset.decoder
        for w, v in ((self.steps, d.steps), (self.strength, d.strength), (self.guidance, d.guidance), (self.seed, d.seed)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        with QSignalBlocker(self.keep_rest):
            self.keep_rest.setChecked(d.region == "edited")
        self.statusBar().showMessage(f"Applied {source[0].lower() + source[1:]}", 5000)
        self.request_render(preview=False)

    def _recent(self) -> list[str]:
        # type=list: an INI file gives a one-entry list back as a bare string, which would be read
        # letter by letter
        return [str(p) for p in self.settings.value("recent", [], type=list)]

    def _remember(self, path: Path) -> None:
        recent = [p for p in self._recent() if p != str(path)]
        self.settings.setValue("recent", [str(path), *recent][:8])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in self._recent():
            a = QAction(Path(p).name, self)
            a.triggered.connect(lambda _c=False, p=p: self.open_image(p))
            self.recent_menu.addAction(a)

    # -- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
        paths = [Path(u.toLocalFile()) for u in e.mimeData().urls()]
        images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if len(images) >= MIN_POSITIVES and len(images) == len(paths):
            self.ask_to_induce(images)  # several images at once: examples of a concept
            return
        for url in e.mimeData().urls():
            path = Path(url.toLocalFile())
            if path.suffix.lower() == ".json":
                self.import_preset(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                self.open_image(path)
            else:
                self.show_error(f"{path.name} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a preset (.json).")
            return

    def _saved(self, key: str, decoder: str) -> int | float:
        """The ``key`` (a ``PER_DECODER`` setting) last used with ``decoder``, else its default."""
        default = PER_DECODER[key](decoder)
        return type(default)(self.settings.value(f"{key}/{decoder}", default))

    def _keep_per_decoder(self) -> None:
        for key in PER_DECODER:
            self.settings.setValue(f"{key}/{self.decoder_name}", getattr(self, key).value())

    def closeEvent(self, e) -> None:  # noqa: N802
        self._keep_per_decoder()
        for key, w in (("guidance", self.guidance), ("seed", self.seed)):
            self.settings.setValue(key, w.value())
        self.settings.setValue("lock_seed", self.lock_seed.isChecked())
        self.settings.setValue("region", self.region())
        self.settings.setValue("decoder", self.decoder_name)
        self.settings.setValue("device", self.device_box.currentData())
        if self._train is not None:
            self._train.close()
        self.scheduler.wait(5000)
        super().closeEvent(e)
