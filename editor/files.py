"""Images, results and presets in and out of the main window: the File menu's dialogs and what
a drop onto the window opens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from editor.canvas import to_qimage
from sae import presets
from sae.errors import UserError
from sae.images import IMAGE_SUFFIXES, load_image, with_alpha
from sae.induce import MIN_POSITIVES
from sae.png import preset_in, save_with_preset

IMAGES_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ")"


@dataclass
class Picture:
    """An image file as read off the GUI thread: its pixels, their copy for the screen, and the
    preset a PNG saved by sae-studio carries (or why that preset could not be read)."""

    path: Path
    image: Image.Image
    shown: QImage
    preset: presets.Preset | None = None
    preset_error: str = ""


def read_picture(path: Path) -> Picture:
    """Decoding a 24-megapixel photo and converting its colour profile take a second or more,
    so the window runs this on a worker."""
    image = load_image(path)
    preset, error = None, ""
    if path.suffix.lower() == ".png":
        try:
            preset = preset_in(path)
        except UserError as e:
            error = str(e)
    return Picture(path, image, to_qimage(image), preset, error)


class Files:
    def __init__(self, window):
        self.w = window

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Open image", "", IMAGES_FILTER)
        if path:
            self.w.open_image(path)

    def save_dialog(self) -> None:
        if self.w.result is None:
            self.w.show_error("There is no edited image to save yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self.w, "Save result", "edited.png", "PNG (*.png)")
        if path:
            self.save_result(path)

    def save_result(self, path: str | Path) -> None:
        current = self.w.model.session.current if self.w.model is not None else None
        result = self.w.result if current is None else with_alpha(self.w.result, current.image)
        save_with_preset(result, path, self.w.current_preset())
        self.w.statusBar().showMessage(f"Saved {Path(path).name} (with its preset inside)", 5000)

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Export preset", "preset.json", "Preset (*.json)")
        if path:
            self.w.current_preset().save(path)
            self.w.statusBar().showMessage(f"Exported {Path(path).name}", 5000)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Import preset", "", "Preset (*.json)")
        if path:
            self.import_preset(path)

    def import_preset(self, path: str | Path) -> None:
        try:
            preset = presets.load(path)
        except UserError as e:
            self.w.show_error(str(e))
            return
        self.w.apply_preset(preset, f"Preset {Path(path).name}")

    def dropped(self, paths: list[Path]) -> None:
        """Several images at once are examples of a concept to induce a slider from; else the
        first file opens as an image or a preset."""
        images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if len(images) >= MIN_POSITIVES and len(images) == len(paths):
            self.w.induction.ask(images)
            return
        for path in paths[:1]:
            if path.suffix.lower() == ".json":
                self.import_preset(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                self.w.open_image(path)
            else:
                self.w.show_error(
                    f"{path.name} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a preset (.json)."
                )
