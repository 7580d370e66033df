"""Undoable changes to the edit document (``QUndoStack`` commands); each changes the document
alone, and the widgets and the render follow the document."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtGui import QUndoCommand

from editor.document import EditDocument, Slider


class MoveSlider(QUndoCommand):
    """A slider moved from ``before`` to ``after`` (a drag, a typed value or a reset)."""

    def __init__(self, doc: EditDocument, latent: int, before: float, after: float):
        super().__init__(f"move slider #{latent}")
        self.doc, self.latent, self.before, self.after = doc, latent, before, after
        self._first = True

    def redo(self) -> None:
        if self._first:  # the drag already put the document there
            self._first = False
            return
        self.doc.set_value(self.latent, self.after)

    def undo(self) -> None:
        self.doc.set_value(self.latent, self.before)


class AddSlider(QUndoCommand):
    """Adds ``slider`` (``adding``) or removes the slider of its latent, as it then is."""

    def __init__(self, doc: EditDocument, slider: Slider, adding: bool = True):
        super().__init__(("add" if adding else "remove") + f" slider #{slider.latent}")
        self.doc, self.slider, self.adding = doc, slider, adding
        self.position: int | None = None

    def _add(self) -> None:
        self.doc.add(replace(self.slider), self.position)

    def _remove(self) -> None:
        taken = self.doc.remove(self.slider.latent)
        if taken is not None:
            self.slider, self.position = taken

    def redo(self) -> None:
        self._add() if self.adding else self._remove()

    def undo(self) -> None:
        self._remove() if self.adding else self._add()


class PaintMask(QUndoCommand):
    def __init__(self, doc: EditDocument, latent: int, before: tuple | None, after: tuple | None):
        super().__init__(f"paint region of #{latent}")
        self.doc, self.latent, self.before, self.after = doc, latent, before, after

    def redo(self) -> None:
        self.doc.set_mask(self.latent, self.after)

    def undo(self) -> None:
        self.doc.set_mask(self.latent, self.before)
