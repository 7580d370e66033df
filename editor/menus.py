"""The main window's menus and its list of recently opened images."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from editor.preferences import Preferences

RECENT = 8  # images the File menu remembers


def _action(window: QMainWindow, menu: QMenu, text: str, slot, shortcut=None) -> QAction:
    a = QAction(text, window)
    if shortcut is not None:
        a.setShortcut(QKeySequence(shortcut))
    a.triggered.connect(slot)
    menu.addAction(a)
    return a


def build_menus(w) -> None:
    """File, Edit, View and Models menus of the main window ``w``."""
    m = w.menuBar().addMenu("&File")
    _action(w, m, "&Open image…", w.files.open_dialog, QKeySequence.StandardKey.Open)
    w.recent_menu = m.addMenu("Open &recent")
    w.recent.show()
    _action(w, m, "&Save result…", w.files.save_dialog, QKeySequence.StandardKey.Save)
    m.addSeparator()
    _action(w, m, "&Export preset…", w.files.export_dialog, "Ctrl+E")
    _action(w, m, "&Import preset…", w.files.import_dialog, "Ctrl+I")
    m.addSeparator()
    _action(w, m, "&Quit", w.close, QKeySequence.StandardKey.Quit)
    e = w.menuBar().addMenu("&Edit")
    undo = w.undo.createUndoAction(w, "&Undo")
    undo.setShortcut(QKeySequence("Ctrl+Z"))
    redo = w.undo.createRedoAction(w, "&Redo")
    redo.setShortcut(QKeySequence("Ctrl+Shift+Z"))
    e.addAction(undo)
    e.addAction(redo)
    e.addSeparator()
    _action(w, e, "Reset all sliders", w.doc.reset_all)
    _action(w, e, "&Induce slider from examples…", w.induction.dialog, "Ctrl+Shift+I")
    v = w.menuBar().addMenu("&View")
    _action(w, v, "Toggle &before/after split", w.canvas.toggle_split, "B")
    _action(w, v, "Show/hide the selected feature's &heatmap", w.canvas.toggle_heatmap, "H")
    w.brush_action = _action(w, v, "&Region brush for the selected slider", w.toggle_brush, "R")
    w.brush_action.setCheckable(True)
    _action(w, v, "&Clear the selected slider's region", w.clear_mask, "Shift+R")
    mm = w.menuBar().addMenu("&Models")
    _action(w, mm, "&Load SAE folder…", w.switcher.load_sae_dialog, "Ctrl+L")
    _action(w, mm, "&Import published SAE file…", w.switcher.import_sae_dialog)
    _action(w, mm, "Import SAE from the &hub…", w.switcher.import_hub_dialog)
    _action(w, mm, "&Train SAE…", w.switcher.train_dialog, "Ctrl+T")


class RecentImages:
    """The images opened last, newest first, kept in the settings and listed under File."""

    def __init__(self, window, store: Preferences):
        self.window, self.store = window, store

    def paths(self) -> list[str]:
        return [str(p) for p in self.store.value("recent", [], type=list)]

    def remember(self, path: Path) -> None:
        recent = [p for p in self.paths() if p != str(path)]
        self.store.set_value("recent", [str(path), *recent][:RECENT])
        self.show()

    def show(self) -> None:
        menu = self.window.recent_menu
        menu.clear()
        for p in self.paths():
            a = QAction(Path(p).name, self.window)
            a.triggered.connect(lambda _c=False, p=p: self.window.open_image(p))
            menu.addAction(a)
