"""What the editor remembers between sessions (recent images, each decoder's steps and strength,
the device, the seed): kept in QSettings, but written to disk on a thread of its own. A QSettings
object writes its file from the GUI thread's event loop and ends each write with ``fdatasync``,
which waits for the disk; beside a model load or the writeback of a fresh download that kept the
window frozen for 50-120 ms."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QSettings


class Preferences:
    """The values of ``settings`` (by default the user's sae-studio settings), read once; ``value``
    answers from memory and ``set_value`` writes through a QSettings object of the writer thread's
    own (Qt allows one object per thread on the same file)."""

    def __init__(self, settings: QSettings | None = None):
        if settings is None:
            settings = QSettings("sae-studio", "sae-studio")
            self._open: Callable[[], QSettings] = lambda: QSettings("sae-studio", "sae-studio")
        else:
            path, form = settings.fileName(), settings.format()
            self._open = lambda: QSettings(path, form)
        self._values: dict[str, Any] = {key: settings.value(key) for key in settings.allKeys()}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preferences")
        self._last: Future | None = None

    def value(self, key: str, default: Any = None, type: type | None = None) -> Any:  # noqa: A002 (QSettings' name)
        """The value kept under ``key``, else ``default``. An INI file gives a one-entry list back as
        a bare string: with ``type=list`` it comes back as that one entry."""
        value = self._values.get(key, default)
        if type is list and not isinstance(value, list):
            return [] if value is None else [value]
        return value

    def set_value(self, key: str, value: Any) -> None:
        self._values[key] = value
        self._last = self._writer.submit(self._write, key, value)  # one writer: in the order given

    def flush(self) -> None:
        """Wait until every value set so far is on disk (the window does when it closes)."""
        if self._last is not None:
            self._last.result()

    def _write(self, key: str, value: Any) -> None:
        settings = self._open()
        settings.setValue(key, value)
        settings.sync()
