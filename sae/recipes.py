"""Named model configurations: which encoder, layer and decoder go together, what they cost to
download and to run, and whether they are already in the local caches.

``sae-studio models`` prints this table; ``load_decoder`` prints a recipe's estimate before a
hub download starts. Sizes are the hub files' sizes (fp32 unless noted); memory figures are
peaks for one 512x512 (Kandinsky) or 768x768 (unCLIP) image at batch 1. The fp32 peaks are
measured at full size (bench/real_shapes.py); the others are made from the measured parts
(``plans``): the encoder stays in fp32 on the device in every plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from sae.decoders.table import DECODERS
from sae.errors import UserError


@dataclass(frozen=True)
class MemoryPlan:
    name: str  # fp32 | fp16 | fp16 + cpu offload
    flags: str  # how to ask for it
    gpu_gb: float  # peak accelerator memory, encoder + decoder, estimated from the parameter counts
    measured_gb: float | None = None  # the peak bench/real_shapes.py measured at full size (see MEASURED_ON)

    @property
    def peak_gb(self) -> float:
        return self.measured_gb if self.measured_gb is not None else self.gpu_gb


# Where the measured figures come from: resident memory above the process's start at the peak of
# one decode (bench/real_shapes.py, results in bench/README.md).
MEASURED_ON = "a two-core CPU with random weights at full size (bench/real_shapes.py)"


def plans(encoder_gb: float, decoder_gb: float, largest_part_gb: float, measured_gb: float) -> tuple[MemoryPlan, ...]:
    """The three plans' peaks from a pair's measured parts (fp32 GB): the encoder (on the device,
    fp32, in every plan: ``--fp16`` halves the decoder only), the decoder's weights and its largest
    part (the one ``--cpu-offload`` keeps on the device while it runs); ``measured_gb`` is the fp32
    peak bench/real_shapes.py measured, so one decode's activations are that less the weights."""
    activations_gb = measured_gb - encoder_gb - decoder_gb
    half = encoder_gb + (decoder_gb + activations_gb) / 2
    offload = encoder_gb + (largest_part_gb + activations_gb) / 2
    return (
        MemoryPlan("fp32", "default", measured_gb, measured_gb=measured_gb),
        MemoryPlan("fp16", "--fp16", round(half, 1)),
        MemoryPlan("fp16 + CPU offload", "--fp16 --cpu-offload", round(offload, 1)),
    )


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
        plans=plans(10.2, 4.96, 4.7, measured_gb=17.9),  # ViT-bigG-14; UNet 4.7 + MoVQ 0.26 GB
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
        plans=plans(4.0, 7.2, 3.5, measured_gb=13.6),  # ViT-H-14; UNet 3.5 + text encoder 1.4 + VAE 0.3 + rest
        note="ViT-H-14 (1B parameters) with Stable Diffusion 2.1 unCLIP; 768x768 images",
    ),
}


def plans_for(recipe: Recipe, device: str) -> tuple[MemoryPlan, ...]:
    """The plans a device can run: the half-precision ones need an accelerator (diffusers runs no
    fp16 pipeline on a CPU)."""
    return tuple(p for p in recipe.plans if device.startswith("cuda") or p.name == "fp32")


def free_memory_gb(device: str) -> float | None:
    """What ``device`` has free for a model now: available RAM on the CPU, free memory on a CUDA
    device (None where it cannot be told)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0] / 1e9
    if device == "cpu":
        import psutil

        return psutil.virtual_memory().available / 1e9
    return None


def check_memory(name: str, device: str, fp16: bool, cpu_offload: bool, loaded_gb: float) -> None:
    """Before a hub decoder loads: one sentence when its plan's peak (the measured and estimated
    figures of ``RECIPES``, less ``loaded_gb`` of its encoder already in place) exceeds the free
    memory, naming the plan that fits."""
    recipe = RECIPES.get(name)
    free = free_memory_gb(str(device))
    if recipe is None or free is None:
        return
    wanted = "fp16 + CPU offload" if cpu_offload else "fp16" if fp16 else "fp32"
    plans = plans_for(recipe, str(device))
    plan = next((p for p in plans if p.name == wanted), plans[0])
    need = max(0.0, plan.peak_gb - loaded_gb)
    if need <= free:
        return
    fits = [p for p in plans if max(0.0, p.peak_gb - loaded_gb) <= free]
    advice = (
        f"the {fits[0].name} plan fits ({fits[0].flags})"
        if fits
        else "no plan of it fits; close other programs or use a machine with more memory"
    )
    raise UserError(
        f"The {name} decoder needs about {need:.1f} GB more in the {plan.name} plan, but {device} has "
        f"{free:.1f} GB free; {advice}."
    )


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
    plans = "; ".join(
        (f"{p.name} {p.measured_gb:g} GB measured" if p.measured_gb else f"{p.name} ~{p.gpu_gb:g} GB") + f" ({p.flags})"
        for p in recipe.plans
    )
    measured = f" Measured on {MEASURED_ON}." if any(p.measured_gb for p in recipe.plans) else ""
    return (
        f"{recipe.name}: downloads ~{recipe.download_gb:.1f} GB into the Hugging Face cache "
        f"(keep ~{recipe.disk_gb:.0f} GB free); memory: {plans}.{measured}"
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
