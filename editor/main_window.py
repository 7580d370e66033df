"""The main window: canvas in the middle, features on the left, sliders and generation settings
on the right. It shows the edit document (``editor.document``) and the model; it computes
nothing itself: renders, searches, heatmaps, loading and induction run on worker threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QToolButton,
    QWidget,
)

from editor.canvas import BeforeAfterView
from editor.collector import release_replaced, tensors_of, while_loading
from editor.commands import AddSlider, MoveSlider, PaintMask
from editor.document import EditDocument, Slider
from editor.features import FeaturePanel
from editor.files import Files, Picture, read_picture
from editor.generation import GenerationPanel
from editor.induction import Induction
from editor.jobs import JobRunner, PreviewThrottle, RenderScheduler
from editor.menus import RecentImages, build_menus
from editor.model import NOT_MEASURED, EditorModel
from editor.preferences import Preferences
from editor.sliders import SliderPanel
from editor.sweep_strip import Sweeps, SweepStrip
from editor.switcher import ModelSwitcher
from sae import presets
from sae.decoders import DecodeSettings
from sae.decoders.table import paired_decoder
from sae.errors import UserError
from sae.induce import InducedSlider
from sae.session import PREVIEW_STRENGTH, PREVIEW_UNITS
from sae.units import Scale

PREVIEW_STEPS = 4
# Where a full render's step takes this long (a CPU at real size), drag previews paint at half the
# side, a quarter of the work, so they still follow the drag.
SLOW_STEP_S, SLOW_PREVIEW_SCALE = 2.0, 0.5
NO_DECODER = "no decoder loaded: choose one under Generation ▸ Decoder"
OLD_PRESET = "a preset made before calibrated units"
FIRST_RUN_SLIDER = "cat"  # the feature a newcomer finds as a slider on the sample image
RELEASE_AFTER_MS = 2000  # after a switch, when to see whether the old model was freed


def fixed_box(*widgets: QWidget) -> QWidget:
    """``widgets`` in a row of fixed size: showing or hiding one leaves the window's layout as it
    is (the progress bar and Stop button come and go with every render, and each time made Qt
    lay out and repaint the whole window)."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        row.addWidget(w)
    box.setFixedSize(box.sizeHint())
    return box


class MainWindow(QMainWindow):
    def __init__(self, load_model: Callable[[], EditorModel] = EditorModel.demo, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("sae-studio")
        self.resize(1280, 760)
        self.setAcceptDrops(True)
        self.settings = Preferences(settings)
        self.model: EditorModel | None = None
        self.result: Image.Image | None = None
        self.image_path: Path | None = None
        self.doc = EditDocument(parent=self)
        self.undo = QUndoStack(self)
        self.canvas = BeforeAfterView()
        self.setCentralWidget(self.canvas)
        self.features = FeaturePanel()
        self.sliders = SliderPanel(self.doc)
        self.generation = GenerationPanel(self.doc, self.settings)
        self.sweep = SweepStrip()
        for title, widget, area in (
            ("Features", self.features, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Sliders", self.sliders, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Sweep", self.sweep, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Generation", self.generation, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
            self.addDockWidget(area, dock)
        self.jobs = JobRunner(self)
        self.recent = RecentImages(self, self.settings)
        self.files, self.induction, self.switcher = Files(self), Induction(self), ModelSwitcher(self)
        build_menus(self)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.stop_button = QToolButton(text="Stop")
        self.stop_button.setToolTip("Stop this render (Esc); the picture shown stays")
        self.stop_button.setShortcut("Esc")
        self.stop_button.clicked.connect(self.stop_render)
        self.statusBar().addPermanentWidget(fixed_box(self.progress, self.stop_button))
        self.progress.setVisible(False)
        self.stop_button.setVisible(False)
        self.scheduler = RenderScheduler(lambda: self.model.session if self.model else None, self)
        self.scheduler.progress.connect(self._progress)
        self.scheduler.step_timed.connect(self.generation.show_timing)
        self.scheduler.finished.connect(self._rendered)
        self.scheduler.failed.connect(lambda _j, msg: self.show_error(msg))
        self.scheduler.causal_ready.connect(self.features.show_causal)
        self.sweeps = Sweeps(self)
        self.scheduler.image_ready.connect(self._image_ready)
        self._reading = False  # a file is being read on a worker
        self._encoding = False  # the scheduler is reading an image into the session
        self._image_job = 0
        self._caption = (0, "edited")  # (render job id, what the right pane shows when it arrives)
        self._carried = (None, "")
        self._suggest_on_image = ""  # a search whose best slider is added when the image is read
        self._pending_image: Path | None = None
        self._to_calibrate: list[int] = []  # sliders whose units are measured next, one at a time
        self._calibrating = False
        self.throttle = PreviewThrottle(
            lambda: self.request_render(preview=True), lambda: self.scheduler.preview_running, self
        )
        self.doc.edits_changed.connect(self._edits_changed)
        self.features.add_requested.connect(self.add_slider)
        self.features.rename_requested.connect(self.rename_feature)
        self.features.search_changed.connect(self.run_search)
        self.features.latent_selected.connect(self._show_latent)
        self.sliders.committed.connect(lambda row, a, b: self.undo.push(MoveSlider(self.doc, row.latent, a, b)))
        self.sliders.remove_requested.connect(self.remove_slider)
        self.sliders.selected_changed.connect(self._selected_row)
        self.canvas.mask_painted.connect(self._painted)
        self.statusBar().showMessage("Loading models…")
        self.jobs.run(
            "models",
            while_loading(load_model),
            done=self._model_ready,
            failed=lambda e: self.show_error(f"Could not load the models: {e}"),
        )

    @property
    def loading_image(self) -> bool:
        """From opening a file until the encoder has read it: no renders meanwhile."""
        return self._reading or self._encoding

    @property
    def decoder_name(self) -> str:
        return self.doc.settings.decoder

    # -- models and images --------------------------------------------------------------------
    def _model_ready(self, model: EditorModel) -> None:
        self.model = model
        has_decoder = model.session.decoder is not None
        self.statusBar().showMessage(
            "Models ready." + ("" if has_decoder else " No decoder: the edited image cannot be painted."), 5000
        )
        # opened on an SAE of its own encoder (sae-studio open): the decoder that paints it, else the last one used
        if has_decoder or not self._load_paired_decoder():
            saved = self.settings.value("decoder", "demo")
            if saved != "demo" or self.generation.device_box.currentData() != "cpu":
                self.switcher.choose_decoder(saved)
        if not has_decoder:
            self.say_no_decoder()
        if self._pending_image is not None:
            self.open_image(self._pending_image)
            if not self.settings.value("first_run_done", False):
                self._suggest_on_image = FIRST_RUN_SLIDER  # once the image's code is known
                self.settings.set_value("first_run_done", True)

    def suggest_slider(self, query: str) -> None:
        """Put ``query`` in the search box and add a slider (at zero) for its best match, preferring
        one that fires on the open image: the strongest-firing latent labelled ``query``, else the
        first of the top five hits that fires. Its marker then shows where the image stands, and
        dragging it down removes what it found as well as dragging it up adds."""
        self.features.search.setText(query)
        model = self.model

        def found(hits) -> None:
            if not hits or self.model is not model:
                return
            named = [f for f in model.session.fires(20) if f.label.strip().lower() == query.lower()]
            firing = [h for h in hits if model.current_activation(h.latent) > 0]
            best = (named or firing or hits)[0]
            self.add_slider(best.latent)
            self.statusBar().showMessage(f"Try the “{best.label}” slider on the right: drag it to edit.", 10000)

        self.jobs.run("suggest", model.search, query, 5, done=found)

    def open_image(self, path: str | Path) -> None:
        path = Path(path)
        if self.model is None:
            self._pending_image = path
            return
        self._reading = True
        self.statusBar().showMessage(f"Opening {path.name}…")
        self.jobs.run("open", read_picture, path, done=self._picture_read, failed=self._picture_failed)

    def _picture_failed(self, error: Exception) -> None:
        self._reading = False  # the picture shown before stays
        self.show_error(str(error) if isinstance(error, UserError) else f"Could not open the image: {error}")

    def _picture_read(self, picture: Picture) -> None:
        self._reading = False
        if picture.preset_error:
            self.show_error(picture.preset_error)
        path = self.image_path = picture.path
        self.canvas.set_before(picture.shown)
        self.canvas.view = None  # until the encoder has read the image
        self.canvas.set_heatmap(None, "")
        self.canvas.busy_text = "reading the image…"
        self.recent.remember(path)
        self._carried = (picture.preset, path.name)
        self._read_image(picture.image)

    def _read_image(self, image: Image.Image) -> None:
        self._encoding = True
        self._image_job = self.scheduler.request_image(image)

    def _image_ready(self, job_id: int) -> None:
        if job_id != self._image_job:
            return  # a newer image is on its way
        self._encoding = False
        session = self.model.session
        self.canvas.view = session.view()
        self.features.show_fires(session.fires(20))
        self.features.show_coverage(*self.model.coverage_text())
        for s in self.doc.sliders:
            self.doc.set_current(s.latent, self.model.current_activation(s.latent))
        carried, name = self._carried
        size_note = session.decoder.sizes.canvas(*session.current.image.size).note() if session.decoder else None
        self.statusBar().showMessage(
            f"Opened {name}" + (f". {size_note}" if size_note else ""), 10000 if size_note else 4000
        )
        if session.decoder is None:
            self.say_no_decoder()
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
    def new_slider(self, latent: int, **fields) -> Slider:
        """A slider for ``latent`` (or an induced slider's id) as the model describes it."""
        m = self.model
        induced = m.induced.get(latent)
        fields = {
            "tokens": m.home_tokens(latent),
            "weights": induced.weights if induced else None,
            "fixed_tokens": m.only_tokens(),
            **fields,
        }
        if fields.get("scale") is None:
            fields["scale"] = m.scale(latent)
        return Slider(latent, m.label(latent), current=m.current_activation(latent), **fields)

    def add_slider(self, latent: int, value: float = 0.0) -> None:
        if self.model is None or self.doc.slider(latent) is not None:
            return
        slider = self.new_slider(latent, value=value)
        self.undo.push(AddSlider(self.doc, slider))
        if latent >= 0 and not slider.scale.calibrated and slider.scale.why == NOT_MEASURED:
            self.calibrate_slider(latent)

    def _calibrated(self, latent: int, scale) -> None:
        self.doc.set_scale(latent, scale)
        if self.sliders.selected is not None and self.sliders.selected.latent == latent:
            self.sweeps.request()  # its positions are in the new units

    def calibrate_slider(self, latent: int) -> None:
        """Measure the slider's calibrated units in the background, pausing while a render the user
        waits for runs; the row takes them when they come. One slider at a time: a preset's ten
        sliders measured together would share the cores and the memory ten ways."""
        if latent not in self._to_calibrate:
            self._to_calibrate.append(latent)
        if not self._calibrating:
            self._calibrate_next()

    def _calibrate_next(self) -> None:
        self._calibrating = bool(self._to_calibrate) and self.model is not None
        if not self._calibrating:
            return
        latent, model = self._to_calibrate.pop(0), self.model

        def done(scale) -> None:
            if self.model is model:
                self._calibrated(latent, scale)
            self._calibrate_next()

        def failed(e: Exception) -> None:
            self.statusBar().showMessage(f"Could not calibrate the slider of #{latent}: {e}", 8000)
            self._calibrate_next()

        self.jobs.run("calibrate", model.calibrate, latent, self.scheduler.yield_to_renders, done=done, failed=failed)

    def remove_slider(self, row) -> None:
        self.undo.push(AddSlider(self.doc, self.doc.slider(row.latent), adding=False))

    def rename_feature(self, latent: int, label: str) -> None:
        try:
            self.model.rename(latent, label)
        except UserError as e:
            self.show_error(str(e))
            return
        self.doc.set_label(latent, label)
        if self.model.session.current is not None:
            self.features.show_fires(self.model.session.fires(20))
        self.statusBar().showMessage(f"Latent #{latent} is now “{label}”", 4000)

    def run_search(self, query: str) -> None:
        if self.model is not None:
            self.jobs.run(
                "search", self.model.search, query, done=self.features.show_results, failed=self._search_failed
            )

    def _search_failed(self, error: Exception) -> None:
        self.statusBar().showMessage(str(error) if isinstance(error, UserError) else f"Search failed: {error}", 8000)

    def _show_latent(self, latent: int) -> None:
        if self.model is None:
            return
        model, session = self.model, self.model.session
        self.features.show_top_images(latent, model.top_thumbnails(latent))
        if session.current is not None and session.backbone.n_patches:
            title = f"#{latent} {model.label(latent)}"
            self.jobs.run(
                "heatmap",
                lambda: (session.heatmap(latent).tolist(), title, model.current_activation(latent)),
                done=lambda args: self.canvas.set_heatmap(*args),
                failed=lambda e: self.show_error(str(e)),
            )
        if session.decoder is None:
            self.features.causal_title.setText(f"#{latent} on its own: needs a decoder (Generation ▸ Decoder)")
        else:
            self.features.causal_pending(latent)
            settings = self.doc.settings.but(strength=PREVIEW_STRENGTH, region="edited")
            self.scheduler.request_causal(
                latent, PREVIEW_UNITS * model.unit(latent), settings, model.home_tokens(latent)
            )

    def _selected_row(self, row) -> None:
        """Another slider selected, or the selected one changed (its value, mask or mode)."""
        mask = set(row.mask or ()) if row is not None else set()
        if mask != self.canvas.mask:  # a drag changes the value alone: no repaint of the canvas
            self.canvas.mask = mask
            self.canvas.update()
        self.sweeps.request()

    def toggle_brush(self) -> None:
        self.canvas.brush = self.brush_action.isChecked() and self.sliders.selected is not None
        if self.brush_action.isChecked() and self.sliders.selected is None:
            self.brush_action.setChecked(False)
            self.statusBar().showMessage("Select a slider first: the brush paints where that slider acts.", 5000)
        self.canvas.update()

    def _painted(self, patch: int) -> None:
        row = self.sliders.selected
        if row is not None:
            self.undo.push(PaintMask(self.doc, row.latent, row.mask, tuple(sorted(set(row.mask or ()) | {patch}))))

    def clear_mask(self) -> None:
        row = self.sliders.selected
        if row is not None and row.mask is not None:
            self.undo.push(PaintMask(self.doc, row.latent, row.mask, None))

    # -- rendering ----------------------------------------------------------------------------
    def decode_settings(self, preview: bool = False) -> DecodeSettings:
        s = self.doc.settings
        if not preview:
            return s
        slow = self.generation.per_step.get(s.decoder, 0.0) >= SLOW_STEP_S
        return s.but(steps=min(PREVIEW_STEPS, s.steps), scale=SLOW_PREVIEW_SCALE if slow else 1.0)

    def request_render(self, preview: bool = False) -> None:
        session = self.model.session if self.model else None
        if session is None or session.current is None or session.decoder is None or self.loading_image:
            return
        if not preview:
            self.generation.next_seed()
        self.canvas.busy_text = "preview…" if preview else "rendering…"
        self.canvas.update()
        edits = self.doc.edits()
        job = self.scheduler.request(edits, self.decode_settings(preview), preview)
        # At zero sliders the right pane is the decoder's round trip, which differs from the input
        # (the demo decoder blurs fine detail): say so, so nobody reads it as an edit.
        unedited = all(e.mode == "add" and e.value == 0 for e in edits)
        self._caption = (job, "decoded, no edits (what the decoder keeps)" if unedited else "edited")
        if not preview:
            self.sweeps.request()  # after this render: the other sliders' values changed

    def _progress(self, job_id: int, step: int, total: int) -> None:
        if job_id == self.scheduler.latest:
            self.progress.setVisible(step < total)
            self.stop_button.setVisible(step < total)
            self.progress.setRange(0, total)
            self.progress.setValue(step)

    def stop_render(self) -> None:
        """Stop the render in progress at its next step; the picture shown stays until the next edit."""
        if not self.scheduler.stop():
            return
        self.throttle.cancel()
        self.progress.setVisible(False)
        self.stop_button.setVisible(False)
        self.canvas.busy_text = ""
        self.canvas.update()
        self.statusBar().showMessage("Render stopped; the picture shown is the last one finished.", 5000)

    def _edits_changed(self, dragging: bool) -> None:
        """A drag asks for throttled previews; anything else (release, reset, mode, settings) for
        the full render at once."""
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
        self.stop_button.setVisible(False)

    def switch_model(self, model: EditorModel) -> None:
        """Edit with another SAE: the sliders go, the open image is read again. An SAE on another
        encoder brings that encoder, and the decoder known to paint its embeddings is loaded."""
        image = self.model.session.current.image if self.model.session.current is not None else None
        encoder = model.session.backbone.model_id
        new_encoder = encoder != self.model.session.backbone.model_id
        kept = {id(r()) for r in tensors_of(model)}  # the encoder and decoder may stay
        replaced = [r for r in tensors_of(self.model) if id(r()) not in kept]
        self.model = model
        # the job that loaded the new model still holds the old one for a moment
        QTimer.singleShot(RELEASE_AFTER_MS, lambda: release_replaced(replaced))
        self.undo.clear()
        self.doc.clear()
        self._to_calibrate.clear()  # latents of the SAE before
        self.features.show_results([])
        self.canvas.set_heatmap(None, "")
        if image is not None:
            self._carried = (None, self.image_path.name if self.image_path else "the image")
            self._read_image(image)
        said = f"SAE: {model.sae_folder} ({model.session.sae.d_sae:,} latents)"
        if new_encoder:
            self.switcher.encoder_changed()
            said += f" on {encoder}"
            self.result = None
            self.canvas.set_after(None)  # painted from the encoder before
            if model.session.decoder is None:
                if not self._load_paired_decoder():
                    said += "; no known decoder paints its embeddings: choose one under Generation ▸ Decoder"
                self.say_no_decoder()
        self.statusBar().showMessage(said, 15000)

    def _load_paired_decoder(self) -> bool:
        """Load the decoder known to paint the current encoder's embeddings; False if none is known."""
        painter = paired_decoder(self.model.session.backbone.model_id)
        if painter is not None:
            self.switcher.choose_decoder(painter)
        return painter is not None

    def say_no_decoder(self) -> None:
        """Where the edited picture would be: which decoder is loading, else that none is loaded
        and where to choose one."""
        loading = self.switcher.loading
        self.canvas.busy_text = f"loading the {loading} decoder…" if loading else NO_DECODER
        self.canvas.after_caption = "edited, once a decoder paints it"
        self.canvas.update()
        if not loading:
            self.generation.show_no_decoder()

    # -- presets -------------------------------------------------------------------------------
    def current_preset(self) -> presets.Preset:
        return self.model.workspace.preset(self.doc.edits(), self.doc.settings)

    def apply_preset(self, preset: presets.Preset, source: str) -> None:
        """Replace the sliders and settings by the preset's (the decoder stays the loaded one)."""
        try:
            self.model.workspace.check_preset(preset, source)
        except UserError as e:
            self.show_error(str(e))
            return
        self.undo.clear()
        sliders = []
        for e in preset.edits:
            latent = self.model.add_induced(InducedSlider(e.label, e.weights)) if e.weights is not None else e.latent
            if all(s.latent != latent for s in sliders):
                units = e.scale or Scale.typical(self.model.unit(latent), OLD_PRESET)  # as its author saw it
                fields = dict(mode=e.mode, value=e.value, tokens=e.tokens, mask=e.mask)
                sliders.append(self.new_slider(latent, scale=units if e.weights is None else None, **fields))
        self.doc.load(sliders, preset.decoder.but(decoder=self.decoder_name))
        self.statusBar().showMessage(f"Applied {source[0].lower() + source[1:]}", 5000)

    # -- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
        self.files.dropped([Path(u.toLocalFile()) for u in e.mimeData().urls()])

    def closeEvent(self, e) -> None:  # noqa: N802
        self.generation.remember()
        self.settings.flush()
        self.switcher.close()
        self.scheduler.shutdown()
        super().closeEvent(e)
