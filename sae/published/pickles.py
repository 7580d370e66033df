"""Reading a torch pickle without letting it run anything.

A pickle can run code when it is loaded. These readers go only through torch's weights-only
loader (``torch.load(weights_only=True)``), and only on torch 2.10 or newer: older versions had
remote-code-execution bugs in that loader (CVE-2025-32434, CVE-2026-24747).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from sae.errors import UserError
from sae.model import all_finite

SAFE_TORCH = (2, 10)  # the first torch whose weights-only loader has both CVE fixes


def torch_version(version: str | None = None) -> tuple[int, int]:
    """(major, minor) of ``version``, by default the torch that runs."""
    major, minor = (version or torch.__version__).split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def safe_load(path: str | Path, data: bytes | None = None) -> Any:
    """What the pickle at ``path`` (or its bytes ``data``) holds: tensors, containers and numbers
    only. One sentence for anything else (code, other objects, a damaged file); nothing in it runs."""
    path = Path(path)
    if torch_version() < SAFE_TORCH:
        raise UserError(
            f"Reading {path.name} needs torch {SAFE_TORCH[0]}.{SAFE_TORCH[1]} or newer (this is {torch.__version__}): "
            "older torch can be made to run code by a crafted file (CVE-2025-32434, CVE-2026-24747)."
        )
    try:
        return torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for forbidden globals, RuntimeError for damaged storages
        first = _why_refused(e)
        raise UserError(
            f"{path} is not a plain file of tensors that can be read safely ({first}); nothing in it was run."
        ) from e


def _why_refused(e: Exception) -> str:
    """torch's reason in a few words: what it found, not its advice to load the file unsafely."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    found = [line for line in lines if line and not line.startswith(advice)]
    return (found[0].split(". Please")[0].rstrip(".") if found else type(e).__name__)[:200]


def tensor_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """``obj`` as a state dict of named tensors; one sentence when it is something else."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict of named tensors.")
    return obj


def as_weights(tensor: torch.Tensor, name: str, path: str | Path) -> torch.Tensor:
    """``tensor`` in float32; one sentence when it holds integers, booleans, complex numbers, NaN or
    infinities (checked before a layout's formula mixes one tensor into another)."""
    if not tensor.is_floating_point():
        raise UserError(f"{path}: '{name}' holds {str(tensor.dtype).removeprefix('torch.')} values, not weights.")
    if not all_finite(tensor):
        raise UserError(f"{path}: '{name}' holds NaN or infinite values; the file is damaged.")
    return tensor.float()


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickled state dict, read safely (see ``safe_load``)."""
    return tensor_dict(safe_load(path), path)
