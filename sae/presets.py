"""Presets: slider settings as versioned JSON that replay on any image.

    {
      "format": "sae-studio-preset", "version": 1,
      "sae": {"sha256": "...", "d_sae": 2048, "d_in": 128, "backbone": "...", "layer": 3},
      "decoder": {"name": "demo", "steps": 8, "strength": 0.9, "guidance": 3.0, "seed": 0},
      "edits": [{"latent": 17, "label": "cat", "mode": "add", "value": 4.0, "mask": null}]
    }

Version 2 adds induced sliders (``sae.induce``): an edit with ``"slider": {"name": ..., "weights":
[[latent, amount], ...]}`` in place of ``"latent"``, always in ``add`` mode. A preset without
one is still written as version 1, so older sae-studio versions keep reading it.

Version 3 adds the decoder's edit region (``"region": "edited"`` repaints only what the edits change,
``sae.decoders.region``; ``"whole"`` repaints the whole image as before). A preset that repaints
the whole image is written as version 1 or 2, and one without the key replays as it was made: over
the whole image. Older sae-studio versions refuse a version 3 preset rather than replay it
differently.

Version 4 adds which tokens an edit touches (``"tokens": "patches"`` or ``"class"``,
``sae.steer.TOKENS``); an edit without the key touches every token, as before. A preset whose
edits all touch every token is written with an older version number.

An edit may record its slider's units (``"scale"``: ``sae.units``), so the editor shows a loaded
preset's sliders where their author saw them; values are amounts, so replays never depend on
units, and older versions ignore the key.

Reading validates against a JSON schema, then checks what a schema cannot: finite values, a
latent id the SAE has, the SAE itself (by the sha256 of its weights). Every refusal is one
sentence. Writing is atomic.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from sae import atomic
from sae.decoders.region import REGIONS
from sae.decoders.table import DecodeSettings
from sae.errors import UserError
from sae.steer import CUSTOM, MODES, TOKENS, Edit
from sae.units import Scale

FORMAT = "sae-studio-preset"
VERSION = 4
MAX_EDITS = 256
MAX_WEIGHTS = 256  # latents in one induced slider
MAX_ABS_VALUE = 1e4
MAX_BYTES = 4 * 2**20

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "version", "sae", "edits"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"type": "integer", "minimum": 1},
        "sae": {
            "type": "object",
            "required": ["sha256", "d_sae", "d_in"],
            "properties": {
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "d_sae": {"type": "integer", "minimum": 1},
                "d_in": {"type": "integer", "minimum": 1},
                "backbone": {"type": "string"},
                "layer": {"type": "integer"},
            },
        },
        "decoder": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "steps": {"type": "integer", "minimum": 1, "maximum": 1000},
                "strength": {"type": "number", "minimum": 0, "maximum": 1},
                "guidance": {"type": "number", "minimum": 0, "maximum": 100},
                "seed": {"type": "integer", "minimum": 0},
                "region": {"enum": list(REGIONS)},
            },
        },
        "edits": {
            "type": "array",
            "maxItems": MAX_EDITS,
            "items": {
                "type": "object",
                "required": ["mode", "value"],
                "oneOf": [{"required": ["latent"]}, {"required": ["slider"]}],
                "properties": {
                    "latent": {"type": "integer", "minimum": 0},
                    "slider": {
                        "type": "object",
                        "required": ["name", "weights"],
                        "properties": {
                            "name": {"type": "string", "maxLength": 200},
                            "weights": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_WEIGHTS,
                                "items": {
                                    "type": "array",
                                    "minItems": 2,
                                    "maxItems": 2,
                                    "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "number"}],
                                },
                            },
                        },
                    },
                    "label": {"type": "string", "maxLength": 200},
                    "mode": {"enum": list(MODES)},
                    "value": {"type": "number"},
                    "tokens": {"enum": list(TOKENS)},
                    "mask": {
                        "anyOf": [
                            {"type": "null"},
                            {"type": "array", "maxItems": 65536, "items": {"type": "integer", "minimum": 0}},
                        ]
                    },
                },
            },
        },
    },
}


def sae_sha256(folder: str | Path) -> str:
    """sha256 of an SAE folder's weights file: the identity a preset is bound to."""
    h = hashlib.sha256()
    weights = Path(folder) / "sae_weights.safetensors"
    if not weights.is_file() and (Path(folder) / "sae.safetensors").is_file():
        weights = Path(folder) / "sae.safetensors"  # a sparsify folder
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class SaeIdentity:
    sha256: str
    d_sae: int
    d_in: int
    backbone: str = ""
    layer: int = -1


@dataclass
class Preset:
    sae: SaeIdentity
    edits: list[Edit] = field(default_factory=list)
    decoder: DecodeSettings = field(default_factory=DecodeSettings)

    def to_json(self) -> dict:
        def edit(e: Edit) -> dict:
            mask = list(e.mask) if e.mask is not None else None
            where = {"tokens": e.tokens} if e.tokens != "all" else {}
            if e.weights is not None:
                return {
                    "slider": {"name": e.label, "weights": [[i, w] for i, w in e.weights]},
                    "mode": e.mode,
                    "value": e.value,
                    "mask": mask,
                } | where
            units = {"scale": e.scale.to_json()} if e.scale is not None and e.mode == "add" else {}
            return (
                {"latent": e.latent, "label": e.label, "mode": e.mode, "value": e.value, "mask": mask} | where | units
            )

        induced = any(e.weights is not None for e in self.edits)
        tokens = any(e.tokens != "all" for e in self.edits)
        version = 4 if tokens else 3 if self.decoder.region != "whole" else 2 if induced else 1
        return {
            "format": FORMAT,
            "version": version,
            "sae": self.sae.__dict__,
            "decoder": _decoder_json(self.decoder),
            "edits": [edit(e) for e in self.edits],
        }

    def save(self, path: str | Path) -> None:
        atomic.write_json(path, self.to_json())


def _reject_constants(token: str) -> float:
    raise ValueError(f"{token} is not a number JSON allows")


def parse(text: str | bytes, source: str = "preset") -> Preset:
    """Validate preset JSON text; one UserError sentence for anything wrong with it."""
    if len(text) > MAX_BYTES:
        raise UserError(f"{source} is {len(text):,} bytes, too large to be a preset (limit {MAX_BYTES:,}).")
    try:
        raw = atomic.parse_json(text, parse_constant=_reject_constants)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{source} is not valid JSON ({e}).") from e
    if (
        isinstance(raw, dict)
        and isinstance(raw.get("version"), int)
        and raw.get("format") == FORMAT
        and raw["version"] > VERSION
    ):
        raise UserError(
            f"{source} is a version {raw['version']} preset from a newer sae-studio; this one reads up to version "
            f"{VERSION}."
        )
    try:
        jsonschema.validate(raw, SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "the top level"
        raise UserError(f"{source} is not a valid preset: at {where}, {e.message}.") from e
    edits = []
    for i, ed in enumerate(raw["edits"]):
        value = float(ed["value"])
        if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
            raise UserError(
                f"{source}: edit {i} has value {value}, outside the allowed -{MAX_ABS_VALUE:g} to {MAX_ABS_VALUE:g}."
            )
        mask = tuple(ed["mask"]) if ed.get("mask") is not None else None
        tokens = ed.get("tokens", "all")  # made before token choices: every token
        if tokens == "class" and mask is not None:
            raise UserError(
                f"{source}: edit {i} is on the class token and has a mask of patches; it can have only one."
            )
        if "slider" in ed:
            edits.append(
                _induced(ed["slider"], ed["mode"], value, mask, tokens, raw["sae"]["d_sae"], f"{source}: edit {i}")
            )
            continue
        if ed["latent"] >= raw["sae"]["d_sae"]:
            raise UserError(
                f"{source}: edit {i} names latent {ed['latent']}, but its SAE has {raw['sae']['d_sae']} latents."
            )
        scale = Scale.from_json(ed.get("scale"))  # the slider's units when it was made (display only)
        edits.append(Edit(ed["latent"], ed["mode"], value, mask, ed.get("label", ""), tokens=tokens, scale=scale))
    known = {k: raw["sae"][k] for k in SaeIdentity.__dataclass_fields__ if k in raw["sae"]}
    return Preset(SaeIdentity(**known), edits, _decoder_settings(raw.get("decoder", {})))


def _decoder_json(settings: DecodeSettings) -> dict:
    """A preset's "decoder" object: the decoder by "name", then its settings."""
    fields = dict(settings.__dict__)
    fields.pop("scale")  # a preview's, never a preset's
    return {"name": fields.pop("decoder"), **fields}


def _decoder_settings(raw: dict) -> DecodeSettings:
    """Settings a preset names; what it leaves out is its decoder's default, and a preset made
    before edit regions repaints the whole image, as it was made."""
    known = {k: raw[k] for k in DecodeSettings.__dataclass_fields__ if k in raw and k not in ("decoder", "scale")}
    return DecodeSettings.for_decoder(raw.get("name", "demo"), **{"region": "whole", **known})


def _induced(slider: dict, mode: str, value: float, mask, tokens: str, d_sae: int, where: str) -> Edit:
    if mode != "add":
        raise UserError(f"{where} is the induced slider '{slider['name']}' in {mode} mode; induced sliders only add.")
    weights = []
    for latent, w in slider["weights"]:
        if latent >= d_sae:
            raise UserError(
                f"{where} (induced slider '{slider['name']}') names latent {latent}, but its SAE has {d_sae} latents."
            )
        if not math.isfinite(w) or abs(w) > MAX_ABS_VALUE:
            raise UserError(
                f"{where} (induced slider '{slider['name']}') has weight {w}, outside the allowed "
                f"-{MAX_ABS_VALUE:g} to {MAX_ABS_VALUE:g}."
            )
        weights.append((int(latent), float(w)))
    return Edit(CUSTOM, "add", value, mask, slider["name"], weights=tuple(weights), tokens=tokens)


def load(path: str | Path) -> Preset:
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise UserError(f"Preset {path} cannot be read ({e.strerror}).") from e
    return parse(text, source=f"Preset {path}")


def check_for(preset: Preset, sha256: str, d_sae: int, source: str = "The preset") -> None:
    """Refuse a preset made for another SAE, naming both."""
    if preset.sae.sha256 != sha256:
        made_for = preset.sae.backbone or "another model"
        raise UserError(
            f"{source} was made for another SAE ({preset.sae.d_sae} latents on {made_for}, layer "
            f"{preset.sae.layer}, sha256 {preset.sae.sha256[:12]}…), not the loaded one "
            f"({d_sae} latents, sha256 {sha256[:12]}…); load that SAE to use it."
        )
