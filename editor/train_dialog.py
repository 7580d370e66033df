"""Models ▸ Train SAE…: a new SAE on a folder of images, trained in the background.

The dialog runs ``sae.make.make_sae`` (extract -> train -> index -> label) on a worker thread and
draws FVU, L0 and the dead fraction as training goes. Cancel stops at the next checkpoint; Start
again with the same folder and output resumes. When the chain finishes, ``trained(folder)``
tells the window to switch to the new SAE.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QValueAxis
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from editor.jobs import start_worker
from sae.backbone import EMBEDDING
from sae.configs import TrainConfig
from sae.errors import UserError
from sae.make import NewSae, Stopped, make_sae

STAGE_NAMES = {"extract": "Extracting activations", "train": "Training", "index": "Indexing", "label": "Labelling"}


class _Bridge(QObject):
    """Carries the chain's events from the worker thread to the dialog (queued signals)."""

    event = Signal(str, int, int, object)


class TrainChart(QChartView):
    """FVU and dead fraction (left axis, 0..1) and L0 (right axis) against the training step."""

    def __init__(self, parent: QWidget | None = None):
        chart = QChart()
        chart.setTitle("Training")
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        self.fvu, self.dead, self.l0 = (
            QLineSeries(name="FVU"),
            QLineSeries(name="dead fraction"),
            QLineSeries(name="L0"),
        )
        for s in (self.fvu, self.dead, self.l0):
            chart.addSeries(s)
        self.x = QValueAxis(titleText="step", labelFormat="%d", min=0, max=100)  # whole numbers before the first step
        self.left = QValueAxis(titleText="FVU · dead", min=0.0, max=1.0)
        self.right = QValueAxis(titleText="L0", min=0.0, max=4.0, labelFormat="%.0f")
        chart.addAxis(self.x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.left, Qt.AlignmentFlag.AlignLeft)
        chart.addAxis(self.right, Qt.AlignmentFlag.AlignRight)
        for s in (self.fvu, self.dead):
            s.attachAxis(self.x)
            s.attachAxis(self.left)
        self.l0.attachAxis(self.x)
        self.l0.attachAxis(self.right)
        super().__init__(chart, parent)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(220)
        self._max_l0 = 4.0

    def clear(self) -> None:
        for s in (self.fvu, self.dead, self.l0):
            s.clear()

    def add(self, step: int, metrics: dict) -> None:
        self.fvu.append(QPointF(step, min(1.0, float(metrics["fvu"]))))
        self.dead.append(QPointF(step, float(metrics.get("dead_fraction", 0.0))))
        l0 = float(metrics.get("l0", 0.0))
        self.l0.append(QPointF(step, l0))
        self._max_l0 = max(self._max_l0, l0 * 1.1)
        self.right.setMax(self._max_l0)
        self.x.setRange(0, max(step, 10))
        self.x.applyNiceNumbers()

    def points(self) -> int:
        return self.fvu.count()


class TrainDialog(QDialog):
    trained = Signal(str)  # the finished SAE folder

    def __init__(
        self,
        model_spec: str,
        n_layers: int,
        default_layer: int,
        parent: QWidget | None = None,
        folder: str = "",
        out: str = "",
    ):
        super().__init__(parent)
        self.setWindowTitle("Train SAE")
        self.model_spec = model_spec
        self.images = QLineEdit(folder, placeholderText="folder of images (searched recursively)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_images)
        self.out = QLineEdit(out, placeholderText="new SAE folder")
        browse_out = QPushButton("Browse…")
        browse_out.clicked.connect(self._browse_out)
        # One below block 0 stands for the projected image embedding (the spin box shows it by name).
        self.layer = QSpinBox(minimum=-1, maximum=max(0, n_layers - 1), suffix=f" of {n_layers}")
        self.layer.setSpecialValueText("image embedding")
        self.layer.setValue(-1 if default_layer == EMBEDDING else default_layer)
        self.layer.setToolTip(
            "The residual stream entering this block (the middle is a good start), or, "
            "below block 0, the final image embedding: one token per image, no regions"
        )
        # the defaults are sae-studio train's (sae.configs.TrainConfig), as is what Start trains with
        self.defaults = TrainConfig(acts="", out="")
        self.expansion = QSpinBox(
            minimum=1, maximum=256, value=self.defaults.expansion, prefix="latents = ", suffix=" × width"
        )
        self.k = QSpinBox(minimum=1, maximum=1024, value=self.defaults.k)
        self.tokens = QSpinBox(
            minimum=1, maximum=100_000, value=max(1, self.defaults.tokens // 1_000_000), suffix=" M tokens"
        )
        self.tokens.setToolTip("Training budget in millions of tokens (image patches); more is better and slower.")
        form = QFormLayout()
        form.addRow("Images", _row(self.images, browse))
        form.addRow("Save to", _row(self.out, browse_out))
        form.addRow("Layer", self.layer)
        form.addRow("Width", self.expansion)
        form.addRow("k (active latents)", self.k)
        form.addRow("Budget", self.tokens)
        self.stage = QLabel("Choose a folder of images and press Start.")
        self.bar = QProgressBar()
        self.chart = TrainChart()
        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel training", QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton("Close", QDialogButtonBox.ButtonRole.RejectRole)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        self.cancel_button.setEnabled(False)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.stage)
        lay.addWidget(self.bar)
        lay.addWidget(self.chart, 1)
        lay.addWidget(self.buttons)
        self.resize(560, 620)
        self._stop = threading.Event()
        self._worker = None
        self._bridge = _Bridge(self)
        self._bridge.event.connect(self._on_event)
        self.running = False
        self.last_message = ""

    # -- the form ---------------------------------------------------------------------------------
    def _browse_images(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of images", self.images.text())
        if path:
            self.images.setText(path)
            if not self.out.text():
                self.out.setText(str(Path(path).parent / f"{Path(path).name}-sae"))

    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the SAE as", self.out.text())
        if path:
            self.out.setText(path)

    def chosen_layer(self) -> int:
        return EMBEDDING if self.layer.value() < 0 else self.layer.value()

    def spec(self) -> NewSae:
        images, out = self.images.text().strip(), self.out.text().strip()
        if not images or not Path(images).is_dir():
            raise UserError("Choose a folder of images to train on.")
        if not out:
            raise UserError("Choose where to save the new SAE.")
        train = replace(
            self.defaults, expansion=self.expansion.value(), k=self.k.value(), tokens=self.tokens.value() * 1_000_000
        )
        return NewSae(images=images, out=out, model=self.model_spec, layer=self.chosen_layer(), train=train)

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            spec = self.spec()
        except UserError as e:
            self._say(str(e))
            return
        self._stop.clear()
        self.chart.clear()
        self.running = True
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._say("Starting…")

        def run() -> str:
            make_sae(spec, on_event=self._bridge.event.emit, should_stop=self._stop.is_set)
            return spec.out

        self._worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        self._worker.returned.connect(self._done)
        self._worker.errored.connect(self._failed)
        self._worker.finished.connect(self._idle)
        start_worker(self._worker)

    def cancel(self) -> None:
        self._stop.set()
        self._say("Stopping at the next checkpoint…")

    def _on_event(self, stage: str, done: int, total: int, metrics: dict) -> None:
        self.stage.setText(f"{STAGE_NAMES.get(stage, stage)}: {done:,} of {total:,}")
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        if stage == "train" and "fvu" in metrics and (done % 10 == 0 or done == total):
            self.chart.add(done, metrics)

    def _done(self, folder: str) -> None:
        self._say(f"Done: the new SAE is in {folder}.")
        self.trained.emit(folder)

    def _failed(self, error: Exception) -> None:
        if isinstance(error, Stopped | UserError):
            self._say(str(error))
        else:
            self._say(f"Training failed: {type(error).__name__}: {error}")

    def _idle(self) -> None:
        self.running = False
        self.start_button.setText("Resume" if self._stop.is_set() else "Start")
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _say(self, message: str) -> None:
        self.last_message = message
        self.stage.setText(message)

    def wait(self, timeout_ms: int = 120_000) -> bool:
        """Wait, handling events, until the chain stops (for tests)."""
        from editor.jobs import process_events_until

        return process_events_until(lambda: not self.running, timeout_ms)

    def closeEvent(self, e) -> None:  # noqa: N802
        if self.running:  # it stops at its next checkpoint on its worker; Start resumes it
            self.cancel()
        super().closeEvent(e)


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w
