"""The demo decoder: the tiny Kandinsky 2.2-shaped pipeline shipped in ``assets/demo/decoder``."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from sae.assets import DEMO
from sae.decoders.kandinsky import KandinskyDecoder
from sae.errors import UserError

NEGATIVE_NAME = "negative_image_embeds.safetensors"


def load_demo_decoder(folder: str | Path | None = None, device: str = "cpu") -> KandinskyDecoder:
    folder = Path(folder) if folder else DEMO / "decoder"
    if not (folder / "model_index.json").is_file():
        raise UserError(f"{folder} holds no decoder pipeline; run sae-studio demo build --stages movq,decoder.")
    negative = load_file(str(folder / NEGATIVE_NAME))["negative_image_embeds"]
    return KandinskyDecoder(folder, negative, name="demo", device=device)
