"""``sae-studio demo eval``: every figure of the shipped demo models, measured anew."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sae import atomic
from sae.assets import DEMO
from sae.demo import world
from sae.demo.data import HELD_OUT_SEED, world_data

TARGETS = {
    "clip.zero_shot": 0.90,
    "judge.presence": 0.97,
    "judge.colour": 0.97,
    "judge.background": 0.97,
    "judge.jpeg_agreement": 0.97,
    "sae.fvu": 0.1,
    "sae.dead_held_out": 0.01,
    "sae.splice_cosine": 0.97,
    "sae.auroc": 0.95,
    "decoder.autoencoder": 0.99,
    "decoder.img2img": 0.95,
    "decoder.from_noise": 0.80,
}
DECODER_SCENES = 256  # decoding is the slow part: a quarter of a minute per 32 scenes


def evaluate(demo: Path = DEMO, n_held_out: int = 2_000, out: Path | None = None) -> dict:
    """Every figure of the demo models in ``demo``, written to ``out``/eval.json (default: ``demo``),
    with the decoder's sample grid beside it."""
    out = Path(out or demo)
    out.mkdir(parents=True, exist_ok=True)
    from sae.backbone import load_backbone
    from sae.demo.clip import zero_shot
    from sae.demo.judge import Judge, accuracy
    from sae.demo.metrics import auroc_per_column
    from sae.demo.sae_recipe import dead_held_out, image_codes
    from sae.model import SparseAutoencoder

    held = world_data(n_held_out, seed=HELD_OUT_SEED)
    figures: dict = {"held_out_images": n_held_out}
    backbone = load_backbone(str(demo / "clip"))
    figures["clip"] = {"zero_shot": zero_shot(backbone.model, backbone.tokenizer, held)}
    figures["judge"] = accuracy(Judge.load(demo / "judge"), held)
    sae = SparseAutoencoder.load(demo / "sae")
    backbone = backbone.at_layer(sae.metadata.layer)
    codes = image_codes(backbone, sae, held.images)
    auroc = {}
    for i, kind in enumerate(world.KINDS):
        scores = auroc_per_column(codes, held.present[:, i])
        best = int(np.nanargmax(scores))
        auroc[kind] = {"latent": best, "auroc": float(scores[best])}
    figures["sae"] = {
        **{k: float(v) for k, v in sae.metadata.metrics.items()},
        "concepts": auroc,
        "d_sae": sae.d_sae,
        "layer": sae.metadata.layer,
    }
    # Five times the scenes of the other figures (10,000 by default): rarely firing latents need room.
    figures["sae"]["dead_check_scenes"] = 5 * n_held_out
    figures["sae"]["dead_held_out"] = dead_held_out(backbone, sae, figures["sae"]["dead_check_scenes"])
    if (demo / "decoder" / "model_index.json").is_file():
        from sae.decoders.kandinsky import open_decoder
        from sae.demo.fidelity import decoder_fidelity, sample_grid

        judge = Judge.load(demo / "judge")
        full = load_backbone(str(demo / "clip"))
        decoder = open_decoder(demo / "decoder", full, name="demo")
        figures["decoder"] = decoder_fidelity(decoder, full, judge, held.images[:DECODER_SCENES])
        sample_grid(decoder, full, held.images[:12], out / "decoder-samples.png")
    elif (demo / "movq" / "config.json").is_file():  # the autoencoder ships before its UNet
        from diffusers import VQModel

        from sae.demo.fidelity import autoencoder_fidelity

        movq = VQModel.from_pretrained(demo / "movq").eval()
        figures["decoder"] = {
            "autoencoder": autoencoder_fidelity(movq, Judge.load(demo / "judge"), held.images[:DECODER_SCENES]),
            "scenes": DECODER_SCENES,
        }
    atomic.write_json(out / "eval.json", figures)
    return figures


def table(f: dict) -> str:
    rows = [("figure", "value", "target", "")]

    def row(name, value, target, higher=True):
        ok = "" if target is None else ("ok" if (value >= target if higher else value < target) else "MISS")
        rows.append((name, f"{value:.4f}", "" if target is None else f"{'>=' if higher else '<'} {target}", ok))

    for k, v in f["clip"]["zero_shot"].items():
        row(f"clip zero-shot {k}", v, TARGETS["clip.zero_shot"])
    for k in ("presence", "colour", "background"):
        row(f"judge {k}", f["judge"][k], TARGETS[f"judge.{k}"])
    if "jpeg_agreement" in f["judge"]:
        row("judge reads JPEG-75 copies the same", f["judge"]["jpeg_agreement"], TARGETS["judge.jpeg_agreement"])
    s = f["sae"]
    row("sae fvu", s["fvu"], TARGETS["sae.fvu"], higher=False)
    row("sae dead: silent 10M training tokens", s["dead_fraction"], None)
    row("sae dead: fires on no held-out scene", s["dead_held_out"], TARGETS["sae.dead_held_out"], higher=False)
    row("sae l0", s["l0"], None)
    if "splice_cosine" in s:
        row("sae splice cosine", s["splice_cosine"], TARGETS["sae.splice_cosine"])
    for k, v in s["concepts"].items():
        row(f"sae best-latent AUROC {k} (#{v['latent']})", v["auroc"], TARGETS["sae.auroc"])
    if "decoder" in f:
        d = f["decoder"]
        row(
            "decoder autoencoder: judge agrees (objects+background)",
            d["autoencoder"]["both"],
            TARGETS["decoder.autoencoder"],
        )
        if "img2img" in d:
            row("decoder img2img 0.5: objects+background kept", d["img2img"]["both"], TARGETS["decoder.img2img"])
            row("decoder from noise: objects kept", d["from_noise"]["objects"], TARGETS["decoder.from_noise"])
            row("decoder from noise: background kept", d["from_noise"]["background"], None)
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)).rstrip() for r in rows)
