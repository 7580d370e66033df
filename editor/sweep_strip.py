"""The sweep strip: the selected slider's range at a glance, as quick previews of the picture at
a few positions (``sae.sweep.POSITIONS``, in the slider's units). Each is painted in the
background after any slider render; clicking one moves the slider there."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from editor.canvas import to_qimage
from sae.sweep import POSITIONS, caption, positions
from sae.units import Scale

SIDE = 72  # pixels of each preview
IDLE = "Select a slider to see its range here"


class SweepStrip(QWidget):
    chosen = Signal(int, float)  # latent, slider position (units)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel(IDLE)
        self.title.setStyleSheet("color: gray")
        self.title.setWordWrap(True)
        row = QHBoxLayout()
        row.setSpacing(2)
        self.buttons: list[QToolButton] = []
        for i in range(len(POSITIONS)):
            b = QToolButton()
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.setIconSize(QSize(SIDE, SIDE))
            b.clicked.connect(lambda _checked=False, i=i: self._click(i))
            row.addWidget(b)
            self.buttons.append(b)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self.title)
        lay.addLayout(row)
        self.latent: int | None = None
        self.places: list[float] = []
        self.clear()

    def show_pending(self, latent: int, label: str, places: list[float], scale: Scale) -> None:
        """Empty previews of ``latent``'s slider at ``places`` (units); the pictures follow."""
        self.latent, self.places = latent, list(places)
        units = "calibrated units" if scale.calibrated else f"uncalibrated units ({scale.why})"
        self.title.setText(f"#{latent} {label} across its range, in {units}: click one to set the slider")
        for i, b in enumerate(self.buttons):
            b.setVisible(i < len(places))
            b.setIcon(QIcon())
            if i < len(places):
                b.setText(f"{places[i]:+g}" if places[i] else "0")
                b.setToolTip(caption(places[i], scale) + ": click to move the slider here")

    def show_picture(self, index: int, image: Image.Image) -> None:
        if 0 <= index < len(self.places):
            thumb = image.convert("RGB").copy()
            thumb.thumbnail((SIDE, SIDE))
            self.buttons[index].setIcon(QPixmap.fromImage(to_qimage(thumb)))

    def clear(self) -> None:
        self.latent, self.places = None, []
        for b in self.buttons:
            b.setVisible(False)
        self.title.setText(IDLE)

    def _click(self, index: int) -> None:
        if self.latent is not None and index < len(self.places):
            self.chosen.emit(self.latent, self.places[index])


class Sweeps:
    """Keeps the window's sweep strip on its selected slider: asks the render scheduler for the
    previews (after any slider render), shows them as they come, and moves a clicked slider."""

    def __init__(self, window):
        self.w = window
        self.job = 0
        self.asked: tuple | None = None  # what the strip shows: its slider, lists of edits and settings
        window.scheduler.sweep_ready.connect(self._swept)
        window.sweep.chosen.connect(self._chosen)

    def request(self) -> None:
        w = self.w
        row, session = w.sliders.selected, w.model.session if w.model else None
        if row is None or row.state.mode != "add" or session is None or session.decoder is None:
            w.sweep.clear()
            return
        if session.current is None or w.loading_image:
            return  # asked again once the image is read
        s = row.state
        places = positions(s.scale)
        others = [e for e in w.doc.edits() if e.latent != s.latent]
        lists = [[*others, replace(s.edit(), value=s.scale.amount(p))] for p in places]
        settings = w.decode_settings(preview=True)
        if (s.latent, s.label, s.scale, lists, settings) == self.asked and not w.scheduler.is_stale(self.job):
            return  # dragging the selected slider itself changes none of its previews
        self.asked = (s.latent, s.label, s.scale, lists, settings)
        w.sweep.show_pending(s.latent, s.label, places, s.scale)
        self.job = w.scheduler.request_sweep(lists, settings)

    def _swept(self, job_id: int, index: int, image: Image.Image) -> None:
        if job_id == self.job:
            self.w.sweep.show_picture(index, image)

    def _chosen(self, latent: int, position: float) -> None:
        row = self.w.sliders.row_for(latent)
        if row is not None:
            row.set_value(row.state.scale.amount(position))
