"""One row per slider of the edit document: label, value, mode (add / scale / set), tokens, the
current activation marked, reset and remove. A row shows its ``Slider`` and changes it through the
document (``editor.document``); it keeps no edit state of its own."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
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

from editor.document import EditDocument, Slider
from sae.steer import MODES, TOKENS, Edit

TOKEN_NAMES = {"all": "all tokens", "patches": "patches", "class": "class token"}
TOKENS_TIP = (
    "Which tokens the slider edits. patches: the image patches alone, right for a feature that fires "
    "on parts of the picture (objects); forced onto the class token, where the image embedding is read "
    "out, it drowns out the rest of the picture. class token: that token alone. all tokens: both. "
    "A new slider starts where its feature fires in the indexed images."
)


class SliderRow(QFrame):
    """The view of one ``Slider``: in add mode its position is in the slider's units (``sae.units``),
    the document keeps the amount."""

    committed = Signal(object, float, float)  # self, value before the drag, value after
    remove_requested = Signal(object)

    def __init__(self, doc: EditDocument, state: Slider, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc, self.state = doc, state
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._pressed_value = state.value
        self._moved = False  # the slider moved since it was pressed (previews may be showing)
        self.title = title = QLabel()
        title.setToolTip("Double-click a label in the feature list to rename it")
        title.setWordWrap(True)  # a long label wraps instead of pushing the buttons out of the dock
        self.now = QLabel()
        self.now.setStyleSheet("color: gray")
        self.mode = QComboBox()
        self.mode.addItems(list(MODES))
        self.mode.setToolTip("add: shift the activation · scale: multiply it · set: replace it")
        self.tokens = QComboBox()
        for t in TOKENS:
            self.tokens.addItem(TOKEN_NAMES[t], t)
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
        self.show_state()
        self.slider.valueChanged.connect(self._drag)
        self.slider.sliderPressed.connect(self._press)
        self.slider.sliderReleased.connect(self._release)
        self.slider.editingFinished.connect(self._release)
        self.mode.currentTextChanged.connect(lambda mode: doc.set_mode(self.latent, mode))
        self.tokens.currentIndexChanged.connect(lambda _i: doc.set_tokens(self.latent, self.tokens.currentData()))
        self.reset_button.clicked.connect(self.reset)
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self))

    # what the row shows of its slider
    @property
    def latent(self) -> int:
        return self.state.latent

    @property
    def unit(self) -> float:
        return max(self.state.unit, 1e-3)

    def amount(self, position: float) -> float:
        """The value the slider at ``position`` stands for: in add mode, its units' amount."""
        return self.state.scale.amount(position) if self.state.mode == "add" else position

    def position(self, value: float) -> float:
        return self.state.scale.position(value) if self.state.mode == "add" else value

    def _units_tip(self) -> str:
        s = self.state
        if s.mode != "add":
            return "scale: multiply the activation" if s.mode == "scale" else "set: the activation itself"
        up, down = s.scale.up, s.scale.down
        amounts = f"1 unit adds {up:.3g} to the activation (and -1 takes {down:.3g} away)"
        if s.scale.calibrated:
            return (
                f"Calibrated units: {amounts}. One unit up moves the picture's embedding most of the way "
                "that pictures showing this feature lie from ordinary ones; one down takes away its typical "
                "strongest activation. The range ends where the picture stops changing."
            )
        return f"Uncalibrated units ({s.scale.why}): {amounts}, the feature's typical strongest activation."

    @property
    def label(self) -> str:
        return self.state.label

    @property
    def mask(self) -> tuple[int, ...] | None:
        return self.state.mask

    @property
    def weights(self) -> tuple[tuple[int, float], ...] | None:
        return self.state.weights

    def show_state(self) -> None:
        """Show the slider as the document has it (no signals: nothing changes but the view)."""
        s = self.state
        induced = s.weights is not None
        with QSignalBlocker(self.slider), QSignalBlocker(self.mode), QSignalBlocker(self.tokens):
            self.mode.setCurrentText(s.mode)
            lo, hi = {"add": (-s.scale.bottom, s.scale.top), "scale": (0.0, 4.0), "set": (0.0, 3 * self.unit)}[s.mode]
            self.slider.setRange(lo, hi)
            self.slider.setSingleStep((hi - lo) / 100)
            self.slider.setValue(self.position(s.value))
            self.tokens.setCurrentIndex(TOKENS.index(s.fixed_tokens[0] if s.fixed_tokens else s.tokens))
        self.slider.setToolTip(self._units_tip())
        if induced:
            self.title.setText(f"<b>{s.label}</b>  <span style='color:gray'>induced · {len(s.weights)} latents</span>")
            self.title.setToolTip("A slider induced from example images (Edit ▸ Induce slider from examples)")
            self.mode.setEnabled(False)
            self.mode.setToolTip(
                "Induced sliders add their mix of latents: " + " + ".join(f"{w:.2f} x #{i}" for i, w in s.weights)
            )
        else:
            mark = "" if s.scale.calibrated or s.mode != "add" else " · uncalibrated"
            self.title.setText(f"<b>{s.label}</b>  <span style='color:gray'>#{s.latent}{mark}</span>")
        what = "shows it" if induced else "fires"
        self.now.setText(f"{what} here at {s.current:.2f}" + (" (1 = the examples)" if induced else ""))
        self.tokens.setEnabled(s.mask is None and s.fixed_tokens is None)
        self.tokens.setToolTip(
            s.fixed_tokens[1]
            if s.fixed_tokens
            else "A brushed slider edits its painted patches"
            if s.mask is not None
            else TOKENS_TIP
        )

    # what a person does with it
    def _press(self) -> None:
        self._pressed_value = self.state.value

    def _drag(self, position: float) -> None:
        self._moved = True
        self.doc.set_value(self.latent, self.amount(position), dragging=True)

    def _release(self) -> None:
        if self.state.value != self._pressed_value:
            self.committed.emit(self, self._pressed_value, self.state.value)
            self._pressed_value = self.state.value
        elif self._moved:  # dragged away and back: nothing to undo, but the previews need the full render
            self.doc.settle()
        self._moved = False

    def reset(self) -> None:
        old = self.state.value
        self.doc.set_value(self.latent, self.state.identity())
        self.committed.emit(self, old, self.state.value)
        self._pressed_value = self.state.value

    def set_value(self, value: float) -> None:
        """Move the slider as a typed value would: one change, then the full render."""
        old = self.state.value
        self.doc.set_value(self.latent, value)
        self.committed.emit(self, old, self.state.value)
        self._pressed_value = self.state.value

    def set_mask(self, mask: tuple[int, ...] | None) -> None:
        self.doc.set_mask(self.latent, mask)

    def token_choice(self) -> str:
        return self.state.tokens

    def edit(self) -> Edit:
        return self.state.edit()


class SliderPanel(QWidget):
    """The document's sliders as rows, in its order; a selected row is the brush's target."""

    committed = Signal(object, float, float)  # row, before, after (for undo)
    remove_requested = Signal(object)  # row
    selected_changed = Signal(object)

    def __init__(self, doc: EditDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
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
        doc.added.connect(self._added)
        doc.removed.connect(self._removed)
        doc.changed.connect(self._changed)

    def _added(self, state: Slider, position: int) -> None:
        row = SliderRow(self.doc, state)
        row.committed.connect(self._committed)
        row.remove_requested.connect(self.remove_requested)
        row.mousePressEvent = lambda _e, r=row: self.select(r)  # type: ignore[method-assign]
        self.rows.insert(position, row)
        self._box.insertWidget(position, row)
        self.hint.setVisible(False)
        self.select(row)

    def _removed(self, latent: int) -> None:
        row = self.row_for(latent)
        if row is None:
            return
        self.rows.remove(row)
        row.setParent(None)
        if self.selected is row:
            self.select(self.rows[-1] if self.rows else None)
        self.hint.setVisible(not self.rows)

    def _changed(self, latent: int) -> None:
        row = self.row_for(latent)
        if row is not None:
            row.show_state()
            if row is self.selected:
                self.selected_changed.emit(row)  # its mask may have changed

    def _committed(self, row: SliderRow, before: float, after: float) -> None:
        self.committed.emit(row, before, after)
        self.doc.settle()

    def remove(self, row: SliderRow) -> None:
        self.doc.remove(row.latent)

    def select(self, row: SliderRow | None) -> None:
        self.selected = row
        for r in self.rows:
            r.setStyleSheet("SliderRow { border: 2px solid #e0b030; }" if r is row else "")
        self.selected_changed.emit(row)

    def reset_all(self) -> None:
        self.doc.reset_all()

    def edits(self) -> list[Edit]:
        return self.doc.edits()

    def row_for(self, latent: int) -> SliderRow | None:
        return next((r for r in self.rows if r.latent == latent), None)
