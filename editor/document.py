"""The edit document: the sliders (latent, value, mode, tokens, painted mask) and the decode
settings. Widgets show it and change it only through its methods; undo commands, presets and the
render scheduler read it. Nothing else in the editor holds edit state.

Where a slider value travels: a slider widget calls ``set_value`` -> ``edits_changed(dragging)``
-> the window asks ``RenderScheduler`` for a preview (while dragging) or the full render.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal

from sae.decoders import DecodeSettings
from sae.steer import Edit
from sae.units import Scale


@dataclass
class Slider:
    latent: int  # an SAE latent, or a negative id for an induced slider
    label: str
    scale: Scale  # what a step of the slider means in add mode (``sae.units``)
    current: float = 0.0  # how much the open image shows it
    mode: str = "add"
    value: float = 0.0
    tokens: str = "all"
    mask: tuple[int, ...] | None = None  # painted patches it is limited to (None: no limit)
    weights: tuple[tuple[int, float], ...] | None = None  # an induced slider's latents
    fixed_tokens: tuple[str, str] | None = None  # (tokens, why) when the SAE offers no choice

    @property
    def unit(self) -> float:
        """The activation one unit above zero adds (set mode's range is in these too)."""
        return self.scale.up

    def identity(self, mode: str | None = None) -> float:
        """The value at which the slider in ``mode`` changes nothing."""
        return {"add": 0.0, "scale": 1.0, "set": self.current}[mode or self.mode]

    def edit(self) -> Edit:
        tokens = self.tokens
        if self.mask is not None and tokens == "class":
            tokens = "patches"  # the painted patches are where it acts
        return Edit(
            self.latent,
            self.mode,
            float(self.value),
            self.mask,
            self.label,
            weights=self.weights,
            tokens=tokens,
            scale=self.scale,
        )


class EditDocument(QObject):
    added = Signal(object, int)  # the new Slider, its position
    removed = Signal(int)  # latent
    changed = Signal(int)  # latent: one slider's state changed
    edits_changed = Signal(bool)  # what a render reads changed; True while a slider is dragged
    settings_changed = Signal()

    def __init__(self, settings: DecodeSettings | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.sliders: list[Slider] = []
        self.settings = settings or DecodeSettings()

    def slider(self, latent: int) -> Slider | None:
        return next((s for s in self.sliders if s.latent == latent), None)

    def edits(self) -> list[Edit]:
        return [s.edit() for s in self.sliders]

    # -- sliders --------------------------------------------------------------------------------
    def add(self, slider: Slider, position: int | None = None) -> None:
        position = len(self.sliders) if position is None else position
        self.sliders.insert(position, slider)
        self.added.emit(slider, position)
        if not slider.edit().is_identity:  # a new slider at rest changes nothing a render reads
            self.edits_changed.emit(False)

    def remove(self, latent: int) -> tuple[Slider, int] | None:
        """Take the slider out; returns it with its position (for undo), or None if absent."""
        slider = self.slider(latent)
        if slider is None:
            return None
        position = self.sliders.index(slider)
        self.sliders.remove(slider)
        self.removed.emit(latent)
        if not slider.edit().is_identity:
            self.edits_changed.emit(False)
        return slider, position

    def clear(self) -> None:
        for s in list(self.sliders):
            self.sliders.remove(s)
            self.removed.emit(s.latent)

    def load(self, sliders: list[Slider], settings: DecodeSettings | None = None) -> None:
        """Replace every slider (and the settings, when given): a preset applied, one render due."""
        self.clear()
        for position, slider in enumerate(sliders):
            self.sliders.append(slider)
            self.added.emit(slider, position)
        if settings is not None and settings != self.settings:
            self.settings = settings
            self.settings_changed.emit()
        self.edits_changed.emit(False)

    def _update(self, latent: int, dragging: bool = False, edits: bool = True, **fields) -> None:
        slider = self.slider(latent)
        if slider is None:
            return
        for name, value in fields.items():
            setattr(slider, name, value)
        self.changed.emit(latent)
        if edits:
            self.edits_changed.emit(dragging)

    def set_value(self, latent: int, value: float, dragging: bool = False) -> None:
        self._update(latent, dragging, value=float(value))

    def settle(self) -> None:
        """A drag ended: the full-quality render is due."""
        self.edits_changed.emit(False)

    def set_mode(self, latent: int, mode: str) -> None:
        """Switch mode; the value goes to the new mode's no-change value."""
        slider = self.slider(latent)
        if slider is not None:
            self._update(latent, mode=mode, value=slider.identity(mode))

    def set_tokens(self, latent: int, tokens: str) -> None:
        self._update(latent, tokens=tokens)

    def set_mask(self, latent: int, mask: tuple[int, ...] | None) -> None:
        self._update(latent, mask=mask)

    def set_scale(self, latent: int, scale: Scale) -> None:
        """New units for the slider (its calibration arrived); the amount it adds stays."""
        self._update(latent, edits=False, scale=scale)

    def set_current(self, latent: int, current: float) -> None:
        """What the open image shows of the slider (display only)."""
        self._update(latent, edits=False, current=current)

    def set_label(self, latent: int, label: str) -> None:
        self._update(latent, edits=False, label=label)

    def reset_all(self) -> None:
        for s in self.sliders:
            s.value = s.identity()
            self.changed.emit(s.latent)
        self.edits_changed.emit(False)

    # -- decode settings ------------------------------------------------------------------------
    def update_settings(self, render: bool = True, **changes) -> None:
        """Change decode settings; ``render`` False when no new picture is due (another decoder's
        remembered values, a new seed drawn for the render about to start)."""
        new = replace(self.settings, **changes)
        if new == self.settings:
            return
        self.settings = new
        self.settings_changed.emit()
        if render:
            self.edits_changed.emit(False)
