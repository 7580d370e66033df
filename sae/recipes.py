"""Named model configurations: which encoder, layer and decoder go together, what they cost to
download and to run, and whether they are already in the local caches.

``sae-studio models`` prints this table; ``load_decoder`` prints a recipe's estimate before a
hub download starts. Sizes are the hub files' sizes (fp32 unless noted); memory figures are
estimates for one 512x512 (Kandinsky) or 768x768 (unCLIP) image at batch 1, measured against the
parameter counts, not promises.
"""

from __future__ import annotations

from dataclasses import dataclass

from sae.decoders.table import DECODERS


@dataclass(frozen=True)
class MemoryPlan:
    name: str  # fp32 | fp16 | fp16 + cpu offload
    flags: str  # how to ask for it
    gpu_gb: float  # peak accelerator memory, encoder + decoder


@dataclass(frozen=True)
class Recipe:
    name: str
    encoder: str  # open_clip NAME:TAG
    layer: int  # the default SAE layer (residual entering this block)
    n_layers: int
    decoder: str  # decoder name for load_decoder
    decoder_repo: str  # Hugging Face repo of the decoder pipeline
    download_gb: float  # encoder + decoder files
    decoder_gb: float  # the decoder's part of it (safetensors only)
    disk_gb: float  # what the caches need, with room for temporary files
    plans: tuple[MemoryPlan, ...]
    note: str = ""


RECIPES: dict[str, Recipe] = {
    "kandinsky-2.2": Recipe(
        name="kandinsky-2.2",
        encoder=DECODERS["kandinsky-2.2"].encoder,
        layer=24,
        n_layers=48,
        decoder="kandinsky-2.2",
        decoder_repo=DECODERS["kandinsky-2.2"].hub_id,
        download_gb=10.2 + DECODERS["kandinsky-2.2"].download_gb,
        decoder_gb=DECODERS["kandinsky-2.2"].download_gb,
        disk_gb=18.0,
        plans=(
            MemoryPlan("fp32", "default", 20.0),
            MemoryPlan("fp16", "--fp16", 10.0),
            MemoryPlan("fp16 + CPU offload", "--fp16 --cpu-offload", 5.5),
        ),
        note="ViT-bigG-14 (2.5B parameters) with the Kandinsky 2.2 decoder (UNet 1.2B, MoVQ); 512x512 images",
    ),
    "sd21-unclip": Recipe(
        name="sd21-unclip",
        encoder=DECODERS["sd21-unclip"].encoder,
        layer=16,
        n_layers=32,
        decoder="sd21-unclip",
        decoder_repo=DECODERS["sd21-unclip"].hub_id,
        download_gb=3.9 + DECODERS["sd21-unclip"].download_gb,
        decoder_gb=DECODERS["sd21-unclip"].download_gb,
        disk_gb=14.0,
        plans=(
            MemoryPlan("fp32", "default", 14.0),
            MemoryPlan("fp16", "--fp16", 7.0),
            MemoryPlan("fp16 + CPU offload", "--fp16 --cpu-offload", 4.0),
        ),
        note="ViT-H-14 (1B parameters) with Stable Diffusion 2.1 unCLIP; 768x768 images",
    ),
}


def encoder_cached(spec: str) -> bool:
    """True when open_clip's weights for ``NAME:TAG`` are in the Hugging Face cache."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    name, _, tag = spec.partition(":")
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    if not repo:
        return False
    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo, filename), str):
            return True
    return False


def decoder_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "model_index.json"), str)


def estimate(recipe: Recipe) -> str:
    """One paragraph to print before a download: size, disk, memory plans."""
    plans = "; ".join(f"{p.name} ~{p.gpu_gb:g} GB ({p.flags})" for p in recipe.plans)
    return (
        f"{recipe.name}: downloads ~{recipe.download_gb:.1f} GB into the Hugging Face cache "
        f"(keep ~{recipe.disk_gb:.0f} GB free); GPU memory: {plans}."
    )


def table() -> str:
    rows = [("name", "encoder @ layer", "decoder", "download", "cached", "GPU memory (fp16 / offload)")]
    for r in RECIPES.values():
        enc, dec = encoder_cached(r.encoder), decoder_cached(r.decoder_repo)
        cached = "yes" if enc and dec else ("encoder only" if enc else ("decoder only" if dec else "no"))
        fp16 = next(p for p in r.plans if p.name == "fp16")
        off = r.plans[-1]
        rows.append(
            (
                r.name,
                f"{r.encoder} @ {r.layer}/{r.n_layers}",
                r.decoder_repo,
                f"{r.download_gb:.1f} GB",
                cached,
                f"{fp16.gpu_gb:.0f} GB / {off.gpu_gb:.1f} GB",
            )
        )
    rows.append(("demo", "tiny CLIP @ 3/6 (shipped)", "tiny Kandinsky 2.2 (shipped)", "0", "shipped", "CPU"))
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, width, strict=True)).rstrip() for row in rows)
