"""The real model pairs at their full size, random weights: time and memory per stage.

ViT-bigG-14 + Kandinsky 2.2 and ViT-H-14 + SD 2.1 unCLIP are built from open_clip's configs and
the decoder configs in ``sae/decoders/configs`` (``sae.shapes``); the decoders are written in the
hub's layout and loaded through ``sae.decoders.registry.load_decoder`` as downloaded ones are.
Per stage: seconds and the peak memory it reached (CPU: resident memory above the process's
baseline; CUDA: peak allocated), and at the end each plan's measured peak beside the estimate
``sae-studio models`` prints.

    python bench/real_shapes.py [--pair kandinsky-2.2|sd21-unclip|both] [--device cpu|cuda]
                                [--steps 4] [--fp16] [--region]

On this two-core CPU with ``--steps 4`` it takes about 10 minutes and needs ~20 GB of memory and
~8 GB of temporary disk. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = {"kandinsky-2.2": ("ViT-bigG-14", 24), "sd21-unclip": ("ViT-H-14", 16)}
WIDE = 163_840  # the published Kandinsky 2.2 embedding SAE's width


class Meter:
    """Seconds and peak memory of each stage; CPU memory is sampled every 20 ms."""

    def __init__(self, device: str):
        import psutil
        import torch

        self.torch, self.device, self.rows = torch, device, []
        self.proc = psutil.Process()
        self.baseline = self._now()
        self.peak = 0.0
        threading.Thread(target=self._sample, daemon=True).start()

    def _now(self) -> float:
        if self.device == "cuda":
            return self.torch.cuda.memory_allocated() / 2**30
        return self.proc.memory_info().rss / 2**30

    def _sample(self) -> None:
        while True:
            if self.device != "cuda":
                self.peak = max(self.peak, self._now())
            time.sleep(0.02)

    @contextmanager
    def stage(self, name: str, note: str = ""):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        self.peak = self._now()
        t0 = time.perf_counter()
        extra: dict[str, str] = {}
        yield extra
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.peak = self.torch.cuda.max_memory_allocated() / 2**30
        seconds = time.perf_counter() - t0
        memory = self.peak - (0 if self.device == "cuda" else self.baseline)
        self.rows.append((name, seconds, memory, extra.get("note", note)))
        print(f"  {name:<46} {seconds:8.1f} s  {memory:6.2f} GB  {self.rows[-1][3]}", flush=True)


def params(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e9:.2f} B parameters"


def run_pair(pair: str, a: argparse.Namespace, meter: Meter, tmp: Path) -> float:
    """Every stage of one pair; returns the pair's peak memory (GB above the baseline)."""
    import open_clip
    import torch
    from PIL import Image

    from sae.backbone import Backbone
    from sae.decoders import DecodeSettings
    from sae.decoders.registry import load_decoder
    from sae.model import SparseAutoencoder
    from sae.sae_config import SaeConfig, SaeMetadata
    from sae.session import Session
    from sae.shapes import save_kandinsky, save_unclip
    from sae.steer import Edit

    name, layer = PAIRS[pair]
    dtype = torch.float32  # sae-studio loads the encoder and SAE in fp32 in every plan; --fp16 halves the decoder
    half = "fp16" if a.fp16 else "fp32"
    print(f"\n{pair}: {name} @ layer {layer} + its {half} decoder, random weights, {a.device}, {a.steps} steps")
    with meter.stage("build the encoder (open_clip, no weights)") as s:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=a.device)
        model = model.eval()
        backbone = Backbone(model, name, layer, preprocess, open_clip.get_tokenizer(name))
        s["note"] = params(model)
    pixels = preprocess(Image.new("RGB", (512, 512), (90, 140, 200)))[None].to(a.device, dtype)
    with torch.inference_mode():
        with meter.stage("encoder prefix, one image", f"{backbone.n_tokens} tokens x {backbone.width}"):
            resid = backbone.prefix(pixels)
        sae = SparseAutoencoder(SaeConfig(d_in=backbone.width, d_sae=16 * backbone.width), SaeMetadata(layer=layer))
        sae = sae.to(a.device, dtype)
        with meter.stage("SAE encode, 16x at the middle layer", f"{sae.d_sae:,} latents"):
            sae.encode(resid[0])
        del sae
        if pair == "kandinsky-2.2":
            wide = SparseAutoencoder(SaeConfig(d_in=backbone.embed_dim, d_sae=WIDE, arch="relu")).to(a.device, dtype)
            with meter.stage("SAE encode, the 163,840-latent embedding SAE", "1 embedding"):
                wide.encode(backbone.suffix(resid))
            del wide
        with meter.stage("encoder suffix", f"embedding {backbone.embed_dim}-d"):
            backbone.suffix(resid)
    gc.collect()
    folder = tmp / pair
    with meter.stage("build and save the decoder (hub layout, fp32)") as s:
        (save_kandinsky if pair == "kandinsky-2.2" else save_unclip)(folder)
        s["note"] = f"{sum(f.stat().st_size for f in folder.rglob('*') if f.is_file()) / 2**30:.1f} GB on disk"
    gc.collect()
    with meter.stage("load the decoder (load_decoder)"):
        decoder = load_decoder(str(folder), backbone, device=a.device, fp16=a.fp16)
    session = Session(backbone, SparseAutoencoder(SaeConfig(d_in=backbone.width, d_sae=4096), SaeMetadata(layer=layer)))
    session.decoder = decoder
    settings = DecodeSettings.for_decoder(decoder.name).but(steps=a.steps, region="whole")
    peak = max(r[2] for r in meter.rows[-2:])
    for size in ((512, 512), (640, 480)):
        session.set_image(Image.new("RGB", size, (90, 140, 200)))
        w, h = decoder.sizes.canvas(*size).working
        with meter.stage(f"decode {size[0]}x{size[1]}, {a.steps} steps (img2img)", f"painted at {w}x{h}"):
            session.render([Edit(7, "add", 2.0)], settings)
        peak = max(peak, meter.rows[-1][2])
    if a.region and pair == "kandinsky-2.2":
        session.set_image(Image.new("RGB", (512, 512), (90, 140, 200)))
        with meter.stage("decode 512x512 with the edit region (DiffEdit)"):
            session.render([Edit(7, "add", 2.0)], settings.but(region="edited"))
        peak = max(peak, meter.rows[-1][2])
    del session, decoder, backbone, model
    gc.collect()
    shutil.rmtree(folder, ignore_errors=True)
    return peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", choices=(*PAIRS, "both"), default="both")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=4, help="decoder steps (img2img runs steps x strength of them)")
    p.add_argument(
        "--fp16", action="store_true", help="a half-precision decoder, the encoder in fp32 (the app's --fp16 plan)"
    )
    p.add_argument("--region", action="store_true", help="also time a DiffEdit region edit (many UNet passes)")
    a = p.parse_args()
    from sae.memory import keep_freed_memory

    keep_freed_memory()  # as every sae-studio command does first
    import torch

    from sae.recipes import RECIPES

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda asked for, but this machine has no CUDA device torch can use.")
    torch.manual_seed(0)
    meter = Meter(a.device)
    tmp = Path(tempfile.mkdtemp(prefix="real-shapes-"))
    t0 = time.perf_counter()
    measured = {}
    try:
        for pair in PAIRS if a.pair == "both" else (a.pair,):
            measured[pair] = run_pair(pair, a, meter, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plan = "fp16" if a.fp16 else "fp32"
    print(f"\npeak memory of each pair against sae-studio models' estimate ({plan} plan, {a.device}):")
    for pair, peak in measured.items():
        estimate = next(x.gpu_gb for x in RECIPES[pair].plans if x.name == plan)
        print(f"  {pair:<14} measured {peak:5.1f} GB  estimate {estimate:5.1f} GB  ratio {peak / estimate:.2f}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
