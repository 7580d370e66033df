"""Device and precision choice: CUDA, then MPS, then CPU, overridable."""

from __future__ import annotations

import contextlib

import torch

from sae.errors import UserError


def pick_device(preference: str | None = None) -> torch.device:
    """The device named by ``preference`` ("cuda", "cuda:1", "mps", "cpu"), or the best present."""
    if preference and preference != "auto":
        try:
            device = torch.device(preference)
        except RuntimeError as e:
            raise UserError(f"'{preference}' is not a device name; use cpu, cuda, cuda:N or mps.") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"Device '{preference}' was asked for but no CUDA GPU is available; use --device cpu.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"Device '{preference}' was asked for but MPS is not available; use --device cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[str]:
    """Device names present on this machine, CPU first."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def supports_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast where the device supports it, else a no-op context."""
    if enabled and supports_bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
