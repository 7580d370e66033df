"""One slider per chosen latent: label, value, mode (add / scale / set), the current activation
marked, reset and remove; the panel turns the rows into ``Edit``s."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from sae.steer import MODES, TOKENS, Edit

TOKEN_NAMES = {"all": "all tokens", "patches": "patches", "class": "class token"}
TOKENS_TIP = ("Which tokens the slider edits. patches: the image patches alone, right for a feature that fires "
              "on parts of the picture (objects); forced onto the class token, where the image embedding is read "
              "out, it drowns out the rest of the picture. class token: that token alone. all tokens: both. "
              "A new slider starts where its feature fires in the indexed images.")


class SliderRow(QFrame):
    """``unit`` is the latent's typical max activation: ranges are in units of it."""

    moved = Signal(object)  # self, while dragging
    committed = Signal(object, float, float)  # self, value before the drag, value after
    mode_changed = Signal(object, str, str)  # self, old mode, new mode
    tokens_changed = Signal(object)  # self
    remove_requested = Signal(object)

    def __init__(self, latent: int, label: str, unit: float, current: float, parent: QWidget | None = None):
        super().__init__(parent)
        self.latent, self.label, self.unit, self.current = latent, label, max(unit, 1e-3), current
        self.mask: tuple[int, ...] | None = None
        self.weights: tuple[tuple[int, float], ...] | None = None  # an induced slider's latents
        self.tokens_fixed = False  # the SAE reads one kind of token only: there is no choice
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._pressed_value = 0.0
        self.title = title = QLabel(f"<b>{label}</b>  <span style='color:gray'>#{latent}</span>")
        title.setToolTip("Double-click a label in the feature list to rename it")
        title.setWordWrap(True)  # a long label wraps instead of pushing the buttons out of the dock
        self.now = QLabel(f"fires here at {current:.2f}")
        self.now.setStyleSheet("color: gray")
        self.mode = QComboBox()
        self.mode.addItems(list(MODES))
        self.mode.setToolTip("add: shift the activation · scale: multiply it · set: replace it")
        self.tokens = QComboBox()
        for t in TOKENS:
            self.tokens.addItem(TOKEN_NAMES[t], t)
        self.tokens.setToolTip(TOKENS_TIP)
        self.slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.slider.setDecimals(2)
        self.reset_button = QToolButton(text="↺")
        self.reset_button.setToolTip("Reset this slider (no edit)")
        self.remove_button = QToolButton(text="✕")
        self.remove_button.setToolTip("Remove this slider")
        top = QHBoxLayout()
        top.addWidget(title, 1)
        top.addWidget(self.mode)
        top.addWidget(self.reset_button)
        top.addWidget(self.remove_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addLayout(top)
        lay.addWidget(self.slider)
        bottom = QHBoxLayout()
        bottom.addWidget(self.now, 1)
        on = QLabel("on")
        on.setStyleSheet("color: gray")
        bottom.addWidget(on)
        bottom.addWidget(self.tokens)
        lay.addLayout(bottom)
        self._last_mode = "add"
        self._apply_range("add")
        self.slider.setValue(0.0)
        self.slider.valueChanged.connect(lambda _v: self.moved.emit(self))
        self.slider.sliderPressed.connect(self._press)
        self.slider.sliderReleased.connect(self._release)
        self.slider.editingFinished.connect(self._release)
        self.mode.currentTextChanged.connect(self._mode)
        self.tokens.currentIndexChanged.connect(lambda _i: self.tokens_changed.emit(self))
        self.reset_button.clicked.connect(self.reset)
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self))

    def _apply_range(self, mode: str) -> None:
        u = self.unit
        lo, hi = {"add": (-3 * u, 3 * u), "scale": (0.0, 4.0), "set": (0.0, 3 * u)}[mode]
        self.slider.blockSignals(True)
        self.slider.setRange(lo, hi)
        self.slider.setSingleStep((hi - lo) / 100)
        self.slider.blockSignals(False)

    def identity_value(self, mode: str | None = None) -> float:
        mode = mode or self.mode.currentText()
        return {"add": 0.0, "scale": 1.0, "set": self.current}[mode]

    def _press(self) -> None:
        self._pressed_value = self.slider.value()

    def _release(self) -> None:
        if self.slider.value() != self._pressed_value:
            self.committed.emit(self, self._pressed_value, self.slider.value())
            self._pressed_value = self.slider.value()

    def _mode(self, mode: str) -> None:
        old = self._last_mode
        self._last_mode = mode
        self._apply_range(mode)
        self.slider.setValue(self.identity_value(mode))
        self.mode_changed.emit(self, old, mode)

    def set_mode(self, mode: str) -> None:
        """Switch mode without emitting signals (undo and presets restore a row this way)."""
        self.mode.blockSignals(True)
        self.mode.setCurrentText(mode)
        self.mode.blockSignals(False)
        self._apply_range(mode)
        self._last_mode = mode

    def token_choice(self) -> str:
        return self.tokens.currentData()

    def set_tokens(self, tokens: str) -> None:
        """Choose which tokens the slider edits, without emitting signals."""
        self.tokens.blockSignals(True)
        self.tokens.setCurrentIndex(TOKENS.index(tokens))
        self.tokens.blockSignals(False)

    def set_mask(self, mask: tuple[int, ...] | None) -> None:
        """Limit the slider to painted patches (None: no limit). A brushed slider acts on its
        patches alone, so its token choice steps aside while it has a mask."""
        self.mask = mask
        self.tokens.setEnabled(mask is None and not self.tokens_fixed)
        if not self.tokens_fixed:
            self.tokens.setToolTip("A brushed slider edits its painted patches" if mask is not None else TOKENS_TIP)

    def fix_tokens(self, tokens: str, why: str) -> None:
        """Offer no choice of tokens: the SAE reads ``tokens`` alone (``why`` says so)."""
        self.tokens_fixed = True
        self.set_tokens(tokens)
        self.tokens.setEnabled(False)
        self.tokens.setToolTip(why)

    def set_value(self, value: float, quiet: bool = False) -> None:
        self.slider.blockSignals(quiet)
        self.slider.setValue(value)
        self.slider.blockSignals(False)
        self._pressed_value = value

    def reset(self) -> None:
        old = self.slider.value()
        self.set_value(self.identity_value())
        self.committed.emit(self, old, self.slider.value())

    def make_induced(self, weights: tuple[tuple[int, float], ...]) -> None:
        """Turn this row into an induced slider's: add-only, its latents in the tooltip."""
        self.weights = weights
        self.title.setText(f"<b>{self.label}</b>  <span style='color:gray'>induced · {len(weights)} latents</span>")
        self.title.setToolTip("A slider induced from example images (Edit ▸ Induce slider from examples)")
        self.mode.setEnabled(False)
        self.mode.setToolTip("Induced sliders add their mix of latents: " +
                             " + ".join(f"{w:.2f} x #{i}" for i, w in weights))
        self.set_current(self.current)

    def set_current(self, current: float) -> None:
        """How much the newly opened image shows the latent (or the induced slider's mix)."""
        self.current = current
        what = "shows it" if self.weights is not None else "fires"
        self.now.setText(f"{what} here at {current:.2f}" + (" (1 = the examples)" if self.weights is not None else ""))

    def edit(self) -> Edit:
        tokens = self.token_choice()
        if self.mask is not None and tokens == "class":
            tokens = "patches"  # the painted patches are where it acts
        return Edit(self.latent, self.mode.currentText(), float(self.slider.value()), self.mask, self.label,
                    weights=self.weights, tokens=tokens)


class SliderPanel(QWidget):
    edits_changed = Signal(bool)  # True while a slider is being dragged (preview quality)
    committed = Signal(object, float, float)  # row, before, after (for undo)
    selected_changed = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[SliderRow] = []
        self.selected: SliderRow | None = None
        self._box = QVBoxLayout()
        self._box.addStretch(1)
        inner = QWidget()
        inner.setLayout(self._box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # rows fit the dock's width
        scroll.setWidget(inner)
        self.hint = QLabel("No sliders yet: double-click a feature on the left to add one.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: gray")
        self.clear_button = QPushButton("Reset all")
        self.clear_button.clicked.connect(self.reset_all)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.hint)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.clear_button)

    def add(self, latent: int, label: str, unit: float, current: float, index: int | None = None) -> SliderRow:
        row = SliderRow(latent, label, unit, current)
        row.moved.connect(lambda _r: self.edits_changed.emit(True))
        row.committed.connect(self._committed)
        row.mode_changed.connect(lambda *_: self.edits_changed.emit(False))
        row.tokens_changed.connect(lambda *_: self.edits_changed.emit(False))
        row.remove_requested.connect(self.remove)
        row.mousePressEvent = lambda _e, r=row: self.select(r)  # type: ignore[method-assign]
        pos = len(self.rows) if index is None else index
        self.rows.insert(pos, row)
        self._box.insertWidget(pos, row)
        self.hint.setVisible(False)
        self.select(row)
        return row

    def remove(self, row: SliderRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            row.setParent(None)
            if self.selected is row:
                self.select(self.rows[-1] if self.rows else None)
            self.hint.setVisible(not self.rows)
            self.edits_changed.emit(False)

    def select(self, row: SliderRow | None) -> None:
        self.selected = row
        for r in self.rows:
            r.setStyleSheet("SliderRow { border: 2px solid #e0b030; }" if r is row else "")
        self.selected_changed.emit(row)

    def _committed(self, row: SliderRow, before: float, after: float) -> None:
        self.committed.emit(row, before, after)
        self.edits_changed.emit(False)

    def reset_all(self) -> None:
        for r in self.rows:
            r.set_value(r.identity_value(), quiet=True)
        self.edits_changed.emit(False)

    def edits(self) -> list[Edit]:
        return [r.edit() for r in self.rows]

    def row_for(self, latent: int) -> SliderRow | None:
        return next((r for r in self.rows if r.latent == latent), None)
