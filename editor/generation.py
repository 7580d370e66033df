"""The Generation panel: the decoder and its device, and the document's decode settings (steps,
strength, guidance, seed, edit region). It shows ``EditDocument.settings`` and changes them
through the document; steps and strength are remembered per decoder between sessions."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget

from editor.document import EditDocument
from editor.preferences import Preferences
from sae.decoders import DECODERS, default_steps, default_strength
from sae.device import available_devices

# Settings each decoder keeps its own of: a demo-sized step count is far too few for Kandinsky,
# Kandinsky's makes the demo slow, and the demo decoder edits best at a higher strength.
PER_DECODER = {"steps": default_steps, "strength": default_strength}
REGION_TIP = (
    "On: the decoder repaints the region where the edit changes its prediction and keeps the rest of the "
    "image as it is (an image with no edit comes back unchanged). Off: it repaints the whole image at the "
    "chosen strength. The SD 2.1 unCLIP decoder always repaints the whole image."
)


SLOW_RENDER_S = 20.0  # a full render this long or longer is announced, with its measured time


NONE_LOADED = ""  # the decoder box's entry while no decoder is loaded


class GenerationPanel(QWidget):
    def __init__(self, doc: EditDocument, store: Preferences, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.store = doc, store
        self.steps = QSpinBox(minimum=1, maximum=200)
        self.steps.setToolTip("Denoising steps; each decoder keeps its own (the demo's default is 8)")
        self.strength = QDoubleSpinBox(minimum=0.05, maximum=1.0, singleStep=0.05)
        self.strength.setToolTip(
            "img2img strength: how far the decoder may move from the input; each decoder keeps "
            "its own (the demo's default is 0.9)"
        )
        self.guidance = QDoubleSpinBox(minimum=0.0, maximum=20.0, singleStep=0.5)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.lock_seed = QCheckBox("lock seed", checked=store.value("lock_seed", "true") in ("true", True))
        self.keep_rest = QCheckBox("repaint only what the edit changes")
        self.keep_rest.setToolTip(REGION_TIP)
        self.decoder_box = QComboBox()
        for entry in DECODERS.values():
            self.decoder_box.addItem(entry.label, entry.name)
        self.decoder_box.addItem("Pipeline folder…", "folder")
        self.decoder_box.setToolTip("The diffusion decoder that paints the edited embedding")
        self.device_box = QComboBox()
        for dev in available_devices():
            self.device_box.addItem(dev, dev)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(store.value("device", "cpu"))))
        self.estimate = QLabel(wordWrap=True)  # how long a full render takes here, once measured
        self.estimate.setVisible(False)
        self.per_step: dict[str, float] = {}  # decoder -> measured seconds per denoising step
        form = QFormLayout(self)
        for label, widget in (
            ("Decoder", self.decoder_box),
            ("Decoder device", self.device_box),
            ("Steps", self.steps),
            ("Strength", self.strength),
            ("Guidance", self.guidance),
            ("Seed", self.seed),
            ("", self.lock_seed),
            ("", self.keep_rest),
            ("", self.estimate),
        ):
            form.addRow(label, widget)
        doc.update_settings(
            render=False,
            steps=self._recalled("steps", "demo"),
            strength=self._recalled("strength", "demo"),
            guidance=float(store.value("guidance", 3.0)),
            seed=int(store.value("seed", 0)),
            region="whole" if store.value("region", "edited") == "whole" else "edited",
        )
        self.show_settings()
        doc.settings_changed.connect(self.show_settings)
        doc.settings_changed.connect(self.show_estimate)
        self.steps.valueChanged.connect(lambda v: doc.update_settings(steps=v))
        self.strength.valueChanged.connect(lambda v: doc.update_settings(strength=v))
        self.guidance.valueChanged.connect(lambda v: doc.update_settings(guidance=v))
        self.seed.valueChanged.connect(lambda v: doc.update_settings(seed=v))
        self.keep_rest.toggled.connect(lambda on: doc.update_settings(region="edited" if on else "whole"))

    def show_settings(self) -> None:
        s = self.doc.settings
        with (
            QSignalBlocker(self.steps),
            QSignalBlocker(self.strength),
            QSignalBlocker(self.guidance),
            QSignalBlocker(self.seed),
            QSignalBlocker(self.keep_rest),
        ):
            self.steps.setValue(s.steps)
            self.strength.setValue(s.strength)
            self.guidance.setValue(s.guidance)
            self.seed.setValue(s.seed)
            self.keep_rest.setChecked(s.region == "edited")
        self.show_decoder(s.decoder)

    def show_timing(self, decoder: str, seconds_per_step: float) -> None:
        """A full render's measured seconds per step (``RenderScheduler.step_timed``)."""
        self.per_step[decoder] = seconds_per_step
        self.show_estimate()

    def show_estimate(self) -> None:
        """Say how long a full render takes here when it is long enough to wait for: the measured
        seconds per step times the steps img2img runs (steps x strength)."""
        s = self.doc.settings
        per = self.per_step.get(s.decoder)
        seconds = per * max(1, int(s.steps * s.strength)) if per is not None else 0.0
        self.estimate.setVisible(seconds >= SLOW_RENDER_S)
        if seconds >= SLOW_RENDER_S:
            took = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
            self.estimate.setText(
                f"A full render takes about {took} here ({per:.1f} s a step); the previews follow the "
                "sliders meanwhile, and fewer steps are faster."
            )

    def show_no_decoder(self) -> None:
        """Show that no decoder is loaded (an encoder switch left none that paints it), in an
        entry that cannot be chosen."""
        i = self.decoder_box.findData(NONE_LOADED)
        if i < 0:
            self.decoder_box.insertItem(0, "none loaded", NONE_LOADED)
            self.decoder_box.model().item(0).setEnabled(False)
            i = 0
        with QSignalBlocker(self.decoder_box):
            self.decoder_box.setCurrentIndex(i)

    def show_decoder(self, name: str) -> None:
        i = self.decoder_box.findData(name)
        if i < 0:
            self.decoder_box.addItem(name.rstrip("/").rsplit("/", 1)[-1], name)
            i = self.decoder_box.count() - 1
        with QSignalBlocker(self.decoder_box):
            self.decoder_box.setCurrentIndex(i)

    def switch_decoder(self, name: str) -> None:
        """The document now paints with ``name``: keep the old decoder's steps and strength, and
        take up the ones last used with ``name`` (else its defaults)."""
        if name != self.doc.settings.decoder:
            self.remember()
            self.doc.update_settings(
                render=False,
                decoder=name,
                steps=self._recalled("steps", name),
                strength=self._recalled("strength", name),
            )

    def next_seed(self) -> None:
        """Unless the seed is locked, draw the next one for the render about to start."""
        if not self.lock_seed.isChecked():
            self.doc.update_settings(render=False, seed=(self.doc.settings.seed * 1103515245 + 12345) % 2**31)

    def _recalled(self, key: str, decoder: str) -> int | float:
        default = PER_DECODER[key](decoder)
        return type(default)(self.store.value(f"{key}/{decoder}", default))

    def remember(self) -> None:
        """Keep the settings for the next session (the per-decoder ones under the decoder's name)."""
        s = self.doc.settings
        self.store.set_value(f"steps/{s.decoder}", s.steps)
        self.store.set_value(f"strength/{s.decoder}", s.strength)
        for key, value in (
            ("guidance", s.guidance),
            ("seed", s.seed),
            ("region", s.region),
            ("decoder", s.decoder),
            ("lock_seed", self.lock_seed.isChecked()),
            ("device", self.device_box.currentData()),
        ):
            self.store.set_value(key, value)
