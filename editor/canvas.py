"""The canvas: the input and the edited result, side by side or as a before/after split to drag."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QPoint, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from sae.view import EncoderView


def to_qimage(image: Image.Image) -> QImage:
    rgb = image.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    q = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return q.copy()  # own the pixels


class BeforeAfterView(QWidget):
    """Paints ``before`` and ``after`` scaled to fit at their own aspect; small images are
    enlarged without smoothing so the demo world's pixels stay crisp. In split mode a vertical
    divider can be dragged. The heatmap and the brush lie on the encoder's patch grid as ``view``
    places it on the picture; where the encoder reads only part of the picture, a dashed outline
    shows that part."""

    mask_painted = Signal(int)  # patch index painted with the region brush

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.before: QPixmap | None = None
        self.after: QPixmap | None = None
        self.split_mode = False
        self.split = 0.5
        self.mask: set[int] = set()
        self.view: EncoderView | None = None  # where the encoder's patches lie on the input
        self.brush = False
        self.busy_text = ""
        self.after_caption = "edited"  # under the right pane: "edited", or that no edit is applied
        self.heatmap = None  # [grid][grid] activations of the selected feature on the input, or None
        self.heatmap_title = ""
        self.heatmap_whole = 0.0
        self.show_heatmap = True
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)

    def set_before(self, image: QImage | None) -> None:
        """``image``: made off the GUI thread with ``to_qimage`` (a photo's copy takes 0.1 s)."""
        self.before = QPixmap.fromImage(image) if image is not None else None
        self.after = None
        self.update()

    def set_after(self, image: Image.Image | None) -> None:
        self.after = QPixmap.fromImage(to_qimage(image)) if image is not None else None
        self.update()

    def set_heatmap(self, grid, title: str, whole: float = 0.0) -> None:
        """``whole``: the latent's activation over all tokens (it may fire on the class token
        and on no patch, which the grid cannot show)."""
        self.heatmap, self.heatmap_title, self.heatmap_whole = grid, title, whole
        self.update()

    def toggle_heatmap(self) -> None:
        self.show_heatmap = not self.show_heatmap
        self.update()

    def toggle_split(self) -> None:
        self.split_mode = not self.split_mode
        self.update()

    # -- geometry ---------------------------------------------------------------------------------
    def _panes(self) -> tuple[QRect, QRect]:
        """The input's and the result's rectangles: the picture's aspect, as large as fits."""
        r = self.rect().adjusted(8, 22, -8, -24)
        w, h = (self.before.width(), self.before.height()) if self.before is not None else (1, 1)
        if self.split_mode:
            box = _fit(r, w, h)
            return box, box
        half = (r.width() - 8) // 2
        left = _fit(QRect(r.left(), r.top(), half, r.height()), w, h)
        right = _fit(QRect(r.left() + half + 8, r.top(), half, r.height()), w, h)
        return left, right

    def _on_pane(self, pane: QRect, box: tuple[float, float, float, float]) -> QRectF:
        """A rectangle in picture pixels (left, top, right, bottom) on ``pane``, in widget coordinates."""
        sx, sy = pane.width() / self.before.width(), pane.height() / self.before.height()
        left, top, right, bottom = box
        return QRectF(pane.left() + left * sx, pane.top() + top * sy, (right - left) * sx, (bottom - top) * sy)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 38, 42))
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        left, right = self._panes()
        p.setPen(QColor(200, 200, 205))
        if self.before is None:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Drop an image here, or File ▸ Open (Ctrl+O)")
            return
        if self.split_mode:
            p.drawPixmap(left, self.before)
            if self.after is not None:
                x = left.left() + int(left.width() * self.split)
                clip = QRect(x, left.top(), left.right() - x + 1, left.height())
                p.save()
                p.setClipRect(clip)
                p.drawPixmap(left, self.after)
                p.restore()
                p.setPen(QPen(QColor(255, 210, 60), 2))
                p.drawLine(x, left.top(), x, left.bottom())
            p.setPen(QColor(200, 200, 205))
            p.drawText(left.left(), left.bottom() + 18, "before  |  after (drag the line, B toggles)")
        else:
            p.drawPixmap(left, self.before)
            partial = self.view is not None and self.view.is_partial
            p.drawText(
                left.left(),
                left.bottom() + 18,
                "input (the encoder reads inside the dashed line)" if partial else "input",
            )
            if self.after is not None:
                p.drawPixmap(right, self.after)
            else:
                p.drawRect(right.adjusted(0, 0, -1, -1))
                p.drawText(
                    right.adjusted(12, 12, -12, -12),
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    self.busy_text or "the edited image appears here",
                )
            p.drawText(
                right.left(),
                right.bottom() + 18,
                self.after_caption + (f" — {self.busy_text}" if self.busy_text and self.after else ""),
            )
        if self.view is None or not self.view.grid:
            return
        p.save()
        p.setClipRect(left)  # a padded view's cells beyond the picture are not drawn
        if self.heatmap is not None and self.show_heatmap and not self.split_mode:
            top = max((max(row) for row in self.heatmap), default=0.0)
            p.setPen(Qt.PenStyle.NoPen)
            for r, row in enumerate(self.heatmap):
                for c, v in enumerate(row):
                    if v > 0 and top > 0:
                        p.setBrush(QColor(255, 40, 40, int(40 + 150 * v / top)))
                        p.drawRect(self._on_pane(left, self.view.cell(r * len(row) + c)))
        if self.mask or self.brush:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(255, 210, 60, 90))
            for i in self.mask:
                p.drawRect(self._on_pane(left, self.view.cell(i)))
        if self.view.is_partial and not self.split_mode:
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(QColor(255, 255, 255, 200), 1, Qt.PenStyle.DashLine))
            p.drawRect(self._on_pane(left, self.view.box).adjusted(0, 0, -1, -1))
        p.restore()
        if self.heatmap is not None and self.show_heatmap and not self.split_mode:
            top = max((max(row) for row in self.heatmap), default=0.0)
            p.setPen(QColor(255, 120, 120))
            p.drawText(
                left.left(),
                left.top() - 2,
                f"where {self.heatmap_title} fires (H hides)"
                if top > 0
                else f"{self.heatmap_title} fires only on the class token"
                if self.heatmap_whole > 0
                else f"{self.heatmap_title} does not fire here",
            )

    # -- interaction ------------------------------------------------------------------------------
    def _patch_at(self, pos: QPoint) -> int | None:
        """The encoder's patch under ``pos`` on the input pane (None off the picture or the view)."""
        left, _ = self._panes()
        if self.before is None or self.view is None or not left.contains(pos):
            return None
        x = (pos.x() - left.left() + 0.5) / left.width() * self.before.width()
        y = (pos.y() - left.top() + 0.5) / left.height() * self.before.height()
        return self.view.patch_at(x, y)

    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        self._drag(e)

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if e.buttons() & Qt.MouseButton.LeftButton:
            self._drag(e)

    def _drag(self, e: QMouseEvent) -> None:
        pos = e.position().toPoint()
        if self.brush:
            patch = self._patch_at(pos)
            if patch is not None and patch not in self.mask:
                self.mask.add(patch)
                self.mask_painted.emit(patch)
                self.update()
        elif self.split_mode:
            left, _ = self._panes()
            self.split = min(1.0, max(0.0, (pos.x() - left.left()) / max(1, left.width())))
            self.update()


def _fit(box: QRect, width: int, height: int) -> QRect:
    """The largest rectangle of ``width``:``height`` inside ``box``, centred."""
    scale = min(box.width() / max(1, width), box.height() / max(1, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return QRect(box.left() + (box.width() - w) // 2, box.top() + (box.height() - h) // 2, w, h)
