"""The feature panel: text search over latents, what fires in the current image, and a latent's top images."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

ROLE_LATENT = Qt.ItemDataRole.UserRole
CAUSAL_SIDE = 128


class FeaturePanel(QWidget):
    add_requested = Signal(int)  # latent
    rename_requested = Signal(int, str)  # latent, new label
    search_changed = Signal(str)  # debounced query text
    latent_selected = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search features: cat, cowboy hat, night…")
        self.search.setClearButtonEnabled(True)
        self.results = QListWidget()
        self.fires = QListWidget()
        for lst in (self.results, self.fires):
            lst.itemDoubleClicked.connect(self._add)
            lst.currentItemChanged.connect(lambda cur, _prev: cur and self.latent_selected.emit(cur.data(ROLE_LATENT)))
            lst.setToolTip("Double-click to add a slider · F2 to rename the label")
        self.top_images = QWidget()
        self._grid = QGridLayout(self.top_images)
        self._grid.setSpacing(2)
        self.top_title = QLabel("Top images of the selected feature")
        self.top_title.setStyleSheet("color: gray")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.search)
        lay.addWidget(QLabel("Search results"))
        lay.addWidget(self.results, 2)
        lay.addWidget(QLabel("Fires in this image"))
        lay.addWidget(self.fires, 3)
        self.coverage = QLabel()
        self.coverage.setWordWrap(True)
        self.coverage.setToolTip(
            "How much of this picture's activations the SAE reconstructs, against the "
            "pictures it was indexed on (5th to 95th percentile)"
        )
        lay.addWidget(self.coverage)
        lay.addWidget(self.top_title)
        lay.addWidget(self.top_images)
        self.causal_title = QLabel("What the selected feature paints on its own")
        self.causal_title.setStyleSheet("color: gray")
        self.causal_title.setWordWrap(True)
        self.causal = QLabel()
        self.causal.setFixedSize(CAUSAL_SIDE, CAUSAL_SIDE)
        self.causal.setStyleSheet("background: #26262a")
        self.causal.setToolTip("Causal preview: the feature added to an empty scene, decoded")
        lay.addWidget(self.causal_title)
        lay.addWidget(self.causal)
        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._debounce.start())

    @staticmethod
    def _item(latent: int, label: str, value: float, unit: str) -> QListWidgetItem:
        name = f"#{latent}" if label == f"latent {latent}" else f"{label}   #{latent}"
        item = QListWidgetItem(f"{name}   {unit} {value:.2f}")
        item.setData(ROLE_LATENT, latent)
        return item

    def show_results(self, hits) -> None:
        self.results.clear()
        for h in hits:
            self.results.addItem(self._item(h.latent, h.label, h.score, "score"))

    def show_fires(self, firings) -> None:
        self.fires.clear()
        for f in firings:
            self.fires.addItem(self._item(f.latent, f.label, f.activation, "act"))

    def show_coverage(self, line: str, warning: str | None) -> None:
        """The current image's coverage line, and a warning in orange below it when there is one."""
        self.coverage.setText(line if not warning else f"{line}<br><span style='color:#e8a23a'>{warning}</span>")

    def show_top_images(self, latent: int, paths: list[Path]) -> None:
        while self._grid.count():
            w = self._grid.takeAt(0).widget()
            if w:
                w.setParent(None)
        self.top_title.setText(f"Top images of #{latent}" if paths else f"#{latent}: no indexed top images")
        for i, p in enumerate(paths[:8]):
            lab = QLabel()
            lab.setPixmap(QPixmap(str(p)).scaled(48, 48, Qt.AspectRatioMode.KeepAspectRatio))
            lab.setToolTip(p.name)
            self._grid.addWidget(lab, i // 4, i % 4)

    def causal_pending(self, latent: int) -> None:
        self.causal_title.setText(f"#{latent} on its own: painting…")
        self.causal.clear()

    def show_causal(self, latent: int, image) -> None:
        from editor.canvas import to_qimage

        self.causal_title.setText(f"#{latent} on its own (added to an empty scene)")
        self.causal.setPixmap(
            QPixmap.fromImage(to_qimage(image)).scaled(
                CAUSAL_SIDE, CAUSAL_SIDE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
            )
        )

    def _add(self, item: QListWidgetItem) -> None:
        self.add_requested.emit(item.data(ROLE_LATENT))

    def keyPressEvent(self, e) -> None:  # noqa: N802
        lst = self.fires if self.fires.hasFocus() else self.results
        item = lst.currentItem()
        if e.key() == Qt.Key.Key_F2 and item is not None:
            latent = item.data(ROLE_LATENT)
            text, ok = QInputDialog.getText(self, "Rename feature", f"Label for latent #{latent}:")
            if ok and text.strip():
                self.rename_requested.emit(latent, text.strip())
            return
        super().keyPressEvent(e)
