"""Inducing a named slider from example images (``sae.induce``) on a worker thread; the slider
then joins the document like a latent's, undoably."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog

from editor.files import IMAGES_FILTER
from sae.errors import UserError


class Induction:
    def __init__(self, window):
        self.w = window

    def dialog(self) -> None:
        if self.w.model is None:
            return
        files, _ = QFileDialog.getOpenFileNames(
            self.w, "Example images that show the concept (3 to 20)", "", IMAGES_FILTER
        )
        if files:
            self.ask(files)

    def ask(self, files: list[str | Path]) -> None:
        name, ok = QInputDialog.getText(self.w, "Induce a slider", f"Name the concept these {len(files)} images show:")
        if ok and name.strip():
            self.induce(files, name.strip())

    def induce(self, examples: list[str | Path], name: str, negatives: list[str | Path] | None = None) -> None:
        model = self.w.model
        if model is None:
            return
        self.w.statusBar().showMessage(f"Inducing “{name}” from {len(examples)} examples…")

        def done(slider) -> None:
            if self.w.model is not model:
                return  # the SAE changed meanwhile
            self.w.add_slider(model.add_induced(slider), value=1.0)
            self.w.statusBar().showMessage(
                f"Added the induced slider “{slider.name}” ({len(slider.weights)} latents).", 8000
            )

        self.w.jobs.run(
            "induce",
            model.induce,
            list(examples),
            name,
            negatives,
            done=done,
            failed=lambda e: self.w.show_error(str(e) if isinstance(e, UserError) else f"Inducing failed: {e}"),
        )

    @property
    def busy(self) -> bool:
        return self.w.jobs.busy("induce")
