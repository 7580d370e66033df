"""The decoders the app knows by name, and the settings a decode runs with. Torch-free: the
command line's ``--help``, presets and the editor's menus read it without loading a model.

Adding a decoder is one module with an ``open_decoder(source, backbone, name, device, dtype,
cpu_offload)`` function (``sae.decoders.registry`` calls it with the downloaded, shipped or
given folder) and one ``DecoderEntry`` here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class DecoderEntry:
    name: str  # what --decoder, presets and the editor call it
    label: str  # the editor's menu text
    module: str  # the module whose open_decoder loads it
    pipeline: str  # the diffusers pipeline class a saved folder of it names in model_index.json
    steps: int  # default denoising steps
    strength: float  # default img2img strength
    hub_id: str | None = None  # Hugging Face repo it downloads from (None: shipped with the app)
    encoder: str | None = None  # the open_clip NAME:TAG whose image embeddings it paints
    embed_dim: int | None = None  # that embedding's width, checked before any download
    download_gb: float = 0.0  # its files on the hub (safetensors only)
    sizes: tuple[int, int] = (0, 0)  # (native side, side multiple) its configs give (sae.decoders.sizes)
    shipped: str | None = None  # its folder under the app's assets, when it ships with the app


# The demo decoder keeps as much of a scene at 8 steps as at 12 and edits best at 0.9 with the
# edit region on (figures in assets/demo/README.md). The hub decoders' schedulers are trained for
# 1,000 steps; 30 keeps an edit interactive on a GPU, at diffusers' usual strength 0.5.
DECODERS: dict[str, DecoderEntry] = {
    e.name: e
    for e in (
        DecoderEntry(
            "demo",
            "demo (tiny Kandinsky 2.2, shipped)",
            "sae.decoders.kandinsky",
            "KandinskyV22Pipeline",
            steps=8,
            strength=0.9,
            sizes=(64, 16),
            shipped="demo/decoder",
        ),
        DecoderEntry(
            "kandinsky-2.2",
            "Kandinsky 2.2 (downloads 5 GB)",
            "sae.decoders.kandinsky",
            "KandinskyV22Pipeline",
            steps=30,
            strength=0.5,
            hub_id="kandinsky-community/kandinsky-2-2-decoder",
            encoder="ViT-bigG-14:laion2b_s39b_b160k",
            embed_dim=1280,
            download_gb=5.3,
            sizes=(512, 64),
        ),
        DecoderEntry(
            "sd21-unclip",
            "SD 2.1 unCLIP (downloads 8 GB)",
            "sae.decoders.unclip",
            "StableUnCLIPImg2ImgPipeline",
            steps=30,
            strength=0.5,
            hub_id="stabilityai/stable-diffusion-2-1-unclip",
            encoder="ViT-H-14:laion2b_s32b_b79k",
            embed_dim=1024,
            download_gb=7.9,
            sizes=(768, 64),
        ),
    )
}
FOLDER_STEPS, FOLDER_STRENGTH = 30, 0.5  # a pipeline folder's defaults, as the hub decoders'


def decoder_for_encoder(spec: str) -> str:
    """The decoder that paints ``spec``'s image embeddings (Kandinsky 2.2 for ViT-bigG-14), else demo."""
    return paired_decoder(spec) or "demo"


def paired_decoder(model_id: str) -> str | None:
    """The decoder known to paint the image embeddings of the encoder ``model_id`` (an open_clip
    NAME:TAG, or the shipped demo CLIP's ``local-dir:``), None when no known decoder does."""
    from sae.assets import DEMO

    if model_id.startswith("local-dir:") and Path(model_id[len("local-dir:") :]).resolve() == (DEMO / "clip").resolve():
        return "demo"
    return next((e.name for e in DECODERS.values() if e.encoder and e.encoder == model_id), None)


def default_steps(decoder: str) -> int:
    entry = DECODERS.get(decoder)
    return entry.steps if entry else FOLDER_STEPS


def default_strength(decoder: str) -> float:
    entry = DECODERS.get(decoder)
    return entry.strength if entry else FOLDER_STRENGTH


@dataclass
class DecodeSettings:
    steps: int = field(default=DECODERS["demo"].steps)
    strength: float = field(default=DECODERS["demo"].strength)  # img2img: 0 keeps the input, 1 starts from noise
    guidance: float = 3.0  # classifier-free guidance scale on the image embedding
    seed: int = 0
    # "edited": repaint only where the edit changes the decoder's prediction and keep the input
    # elsewhere (sae.decoders.region); "whole": plain img2img over the whole picture
    region: str = "edited"
    decoder: str = "demo"  # a name in DECODERS or a pipeline folder
    # the painted side as a share of the decoder's native side: the editor's drag previews paint at
    # half where a full step takes seconds (a CPU at real size). Not part of presets.
    scale: float = 1.0

    @classmethod
    def for_decoder(cls, decoder: str, **changes) -> DecodeSettings:
        """``decoder``'s default steps and strength, with ``changes`` on top."""
        return cls(default_steps(decoder), default_strength(decoder), decoder=decoder).but(**changes)

    def but(self, **changes) -> DecodeSettings:
        return replace(self, **changes)
