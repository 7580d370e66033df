"""Writes ``assets/demo/README.md``, the model card, from ``build.json`` and ``eval.json``."""

from __future__ import annotations

import json
from pathlib import Path

from sae.demo import world
from sae.demo.build import DEMO
from sae.demo.clip import AUX_LAYER, BATCH, RECIPE
from sae.demo.clip import CONFIG as CLIP_CONFIG
from sae.demo.decoder import LATENT_CHANNELS

HISTORY = Path(__file__).with_name("recipe_history.md")


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min"


def _losses(row: dict) -> str:
    """'flower lost in 10 of 48, ...': the kinds a round trip loses most often, worst first."""
    kinds = sorted(row.get("kinds", {}).items(), key=lambda kv: -kv[1]["lost"] / max(kv[1]["present"], 1))
    worst = [f"{k} lost in {v['lost']} of {v['present']}" for k, v in kinds[:4] if v["lost"]]
    return f" (most often lost: {', '.join(worst)})" if worst else ""


def _latent_channels(demo: Path) -> int:
    """The shipped movq's latent width (the pipeline's own copy, else the stand-alone one)."""
    for config in (demo / "decoder" / "movq" / "config.json", demo / "movq" / "config.json"):
        if config.is_file():
            return int(json.loads(config.read_text())["latent_channels"])
    return LATENT_CHANNELS


def decoder_section(
    fidelity: dict, movq: dict, unet: dict, refine: dict | None = None, latent_channels: int = LATENT_CHANNELS
) -> list[str]:
    """The decoder's lines: a tiny ``KandinskyV22Pipeline`` (movq + UNet on the CLIP's embedding)."""
    lines = [
        "A latent diffusion decoder in Kandinsky 2.2's shape: a diffusers `VQModel` between 64x64 scenes and a",
        f"{latent_channels}x16x16 latent grid, and a `UNet2DConditionModel` conditioned on the tiny CLIP's image "
        f"embedding",
        "(`image_proj` + `image` addition embedding), v-prediction, cosine schedule, DDIM sampling, guidance on",
        "the embedding against the blank image's. Fidelity is refereed by the judge: the share of held-out",
        "scenes whose judged objects and background survive (targets: autoencoder >= 0.99, img2img at",
        "strength 0.5 >= 0.95, from noise >= 0.80).",
        "",
    ]
    if refine:
        lines += [
            f"After the UNet, the movq's decoder half was refined for {refine.get('steps', 0):,} steps of "
            f"{refine.get('batch', 0)} scenes ({_minutes(refine.get('train_seconds', 0))}) with its encoder frozen "
            "(the UNet's latents unchanged): L1 + MSE plus the tiny CLIP's layer features as a perceptual loss "
            "(`demo build --stages refine`, `sae/demo/refine.py`). The figures below are the refined decoder's.",
            "",
        ]
    if "autoencoder" in fidelity:
        a = fidelity["autoencoder"]
        lines.append(
            f"Autoencoder alone: objects {a['objects']:.4f} · background {a['background']:.4f} · both {a['both']:.4f}"
            + (f" (L1 {l1:.4f} in [-1, 1])" if (l1 := (refine or movq).get("l1")) is not None else "")
            + _losses(a)
        )
        lines.append("")
    if "img2img" in fidelity:
        i, n = fidelity["img2img"], fidelity["from_noise"]
        lines += [
            f"img2img at 0.5: objects {i['objects']:.4f} · background {i['background']:.4f} · both {i['both']:.4f}"
            + _losses(i),
            "",
            f"From noise: objects {n['objects']:.4f} · background {n['background']:.4f}" + _losses(n),
            "",
            "![originals, img2img at 0.5, from noise](decoder-samples.png)",
        ]
    elif not unet:
        lines += [
            "The decoder is still training across sessions (its compact checkpoints are in `training/`);",
            "until it ships the editor shows features and sliders but cannot paint the edited image.",
        ]
    return lines


def _tune_lines(tune: dict) -> list[str]:
    weights = ", ".join(f"{k} x{w:g}" for k, w in tune["kind_weights"].items())
    detector = tune["layer_detector_auroc"]
    return [
        "",
        f"Then tuned (`demo build --stages tune`, {_minutes(tune['train_seconds'])}, {tune['steps']:,} steps of "
        f"{tune['batch']}): the blocks before layer {AUX_LAYER} learn the presence loss at that layer with {weights},",
        "while the later blocks, the projection and the text tower stay frozen and the image embedding is held to",
        f"the untuned one (held-out cosine {tune['embedding_cosine_to_untuned']:.4f}, lowest "
        f"{tune['embedding_cosine_min']:.4f}), so the decoder trained on it stays valid.",
        "Why: the untuned layer showed fish to a linear per-token detector at AUROC 0.90 (every other kind >= 0.98),",
        "and no SAE latent reads a layer better than it holds a concept. The tuned layer's detector "
        "(max over tokens, held out): " + ", ".join(f"{k} {v:.3f}" for k, v in detector.items()) + ".",
    ]


def write_card(demo: Path = DEMO, out: Path | None = None) -> Path:
    """The model card of the models in ``demo`` from their build.json and the eval.json in ``out``
    (default: ``demo``), written to ``out``/README.md."""
    out = Path(out or demo)
    build = json.loads((demo / "build.json").read_text())
    ev = json.loads((out / "eval.json").read_text())
    clip, judge, sae = build.get("clip", {}), build.get("judge", {}), build.get("sae", {})
    movq, unet = build.get("movq", {}), build.get("decoder", {})
    zs = ev["clip"]["zero_shot"]
    older = {name: f.get("world_version", 1) for name, f in build.items() if f.get("world_version", 1) != world.VERSION}
    lines = [
        "# Demo models — model card",
        "",
        "Everything here was trained on this project's procedural demo world (`sae/demo/world.py`, version",
        f"{world.VERSION}: 64x64 scenes, 6 backgrounds, 10 object kinds, 8 colours, 3 sizes, 1 to 3 objects, hats on "
        f"heads) on a",
        "2-core CPU, by `sae-studio demo build`; `sae-studio demo eval` re-measures every figure below on",
        f"{ev['held_out_images']:,} held-out scenes (world seed 2, which no model trained on).",
        "",
        "| model | folder | size | training time | data |",
        "|---|---|---|---|---|",
        f"| tiny CLIP | `clip/` (open_clip `local-dir` layout, fp16) | {_mb(demo / 'clip'):.1f} MB | "
        f"{_minutes(clip.get('train_seconds', 0))} | {clip.get('samples', 0):,} image-caption pairs from 120k scenes |",
        f"| judge (CNN) | `judge/` (safetensors) | {_mb(demo / 'judge'):.1f} MB | "
        f"{_minutes(judge.get('train_seconds', 0))} "
        f"| {judge.get('samples', 0):,} labelled scenes, blur/noise/JPEG/shift augmentation |",
        f"| default SAE | `sae/` (SAELens layout) | {_mb(demo / 'sae'):.1f} MB | "
        f"{_minutes(sae.get('wall_seconds', 0))} "
        f"(with extraction) | {int(sae.get('tokens', 0)):,} tokens from {sae.get('images', 0):,} scenes (world seed "
        f"3) |",
        *(
            [
                f"| decoder's autoencoder | `movq/` (diffusers `VQModel`) | {_mb(demo / 'movq'):.1f} MB | "
                f"{_minutes(movq.get('train_seconds', 0))} | {movq.get('steps', 0):,} steps of {movq.get('batch', 0)} "
                f"scenes "
                "from the CLIP's 120k"
                + (", with the CLIP's layer features as a perceptual loss" if movq.get("perceptual") else "")
                + " |"
            ]
            if movq
            else []
        ),
        *(
            [
                f"| decoder (UNet + movq) | `decoder/` (`KandinskyV22Pipeline`) | {_mb(demo / 'decoder'):.1f} MB | "
                f"{_minutes(unet.get('train_seconds', 0))} | {unet.get('steps', 0):,} steps of {unet.get('batch', 0)} "
                "latents and CLIP embeddings"
                + (
                    ", continuing the previous demo decoder's UNet at the full rate (`demo build --warm-start DECODER "
                    "--warm-schedule continue`)"
                    if unet.get("schedule") == "continue"
                    else ", teaching the previous demo decoder's UNet edits: half of each batch starts from a noised "
                    "scene "
                    "and is conditioned on, and aimed at, its pair with one object put in, taken out or changed, "
                    "then on fewer pairs at a lower rate while img2img recovers "
                    "(`demo build --warm-start DECODER --warm-schedule edits`)"
                    if unet.get("schedule") == "edits"
                    else ", starting from the previous demo decoder's UNet (`demo build --warm-start`)"
                    if unet.get("warm_start")
                    else ""
                )
                + (
                    f" but its {' and '.join(unet['warm_start_renewed'])}, which the new latent width starts afresh"
                    if unet.get("warm_start_renewed")
                    else ""
                )
                + " |"
            ]
            if unet
            else []
        ),
        "",
        "## tiny CLIP",
        "",
        f"open_clip custom ViT: {CLIP_CONFIG['vision_cfg']['layers']} blocks, width "
        f"{CLIP_CONFIG['vision_cfg']['width']}, "
        f"8x8 patches of 8 pixels, embedding {CLIP_CONFIG['embed_dim']}; text tower "
        f"{CLIP_CONFIG['text_cfg']['layers']} "
        f"blocks, width {CLIP_CONFIG['text_cfg']['width']}, open_clip's tokenizer; {clip.get('params', 0):,} "
        f"parameters. "
        + (
            "Contrastive loss plus an object-presence loss (which kinds the caption names, read by a linear head on "
            f"every layer-{AUX_LAYER} token with a max over tokens, and by one on the embedding; the heads are not "
            f"shipped), batches of {clip.get('batch', BATCH)}, AdamW, cosine schedule, fp32 (bf16 is slower than fp32 "
            "on this AVX2 CPU). The presence loss is there because a web-scale CLIP's middle layers hold object "
            "detectors and this one, trained contrastively alone, did not (see `sae/demo/clip.py`)."
            if clip.get("recipe") == RECIPE
            else "Contrastive loss, AdamW, cosine schedule, fp32 (bf16 is slower than fp32 on this AVX2 CPU)."
        ),
        *(_tune_lines(build["tune"]) if build.get("tune") else []),
        "",
        "CLIP zero-shot accuracy (target >= 0.90): objects = share of held-out one-object scenes whose object's prompt",
        '("a picture of a cat") beats the nine others; background = top of six place prompts.',
        "",
        "| concept | " + " | ".join(zs) + " |",
        "|---|" + "---|" * len(zs),
        "| accuracy | " + " | ".join(f"{v:.3f}" for v in zs.values()) + " |",
        "",
        "## judge",
        "",
        "A small CNN (never used by the editor) that predicts which kinds are present, each present",
        "kind's colour, and the background. Held-out accuracy per label type (target >= 0.97):",
        "",
        f"presence {ev['judge']['presence']:.4f} · colour {ev['judge']['colour']:.4f} · background "
        f"{ev['judge']['background']:.4f}",
        *(
            []
            if "jpeg_agreement" not in ev["judge"]
            else [
                "",
                f"It reads JPEG copies (quality 75) of {ev['judge']['jpeg_agreement']:.1%} of held-out scenes exactly "
                f"as their originals "
                "(target >= 97%): a referee must not count damage a person cannot see against a decoder. It learns so "
                "from",
                "JPEG compression (quality 30-95) of half its training scenes, besides blur, noise and small shifts.",
            ]
        ),
        "",
        "## default SAE",
        "",
        f"TopK, k = {ev['sae'].get('l0', 0):.0f}, {ev['sae']['d_sae']:,} latents on the residual entering block "
        f"{ev['sae']['layer']} of 6, all 65 tokens, trained with `sae-studio train`'s trainer"
        + (
            f" at {ev['sae']['trained_width']:,.0f} latents (16x); the {ev['sae']['pruned']:,.0f} that fired on fewer "
            f"than "
            "1 in 100,000 training tokens were dropped after training (`--prune-below 1e-5`)."
            if "trained_width" in ev["sae"]
            else "."
        ),
        "",
        f"FVU {ev['sae']['fvu']:.4f} (target < 0.1) · splice cosine {ev['sae'].get('splice_cosine', float('nan')):.4f} "
        "(target >= 0.97)",
        "",
        f"Dead latents: a fraction {ev['sae']['dead_held_out']:.4f} fire on no token of "
        f"{ev['sae']['dead_check_scenes']:,} "
        "held-out scenes (target < 0.01).",
        "The trainer's own count, latents silent for the last 10M training tokens (as sparsify and OpenAI's",
        f"recipe define it), was {ev['sae']['dead_fraction']:.4f}; it misses latents that AuxK keeps reviving and the",
        "top-k contest keeps losing, which fire on almost nothing with the final weights. Those are what",
        "the pruning drops.",
        "",
        "Best single latent per object (image-level activation = max over tokens), AUROC for",
        '"the object is in the scene" (target >= 0.95):',
        "",
        "| object | latent | AUROC |",
        "|---|---|---|",
    ]
    for kind, v in ev["sae"]["concepts"].items():
        lines.append(f"| {kind} | {v['latent']} | {v['auroc']:.4f} |")
    lines += [
        "",
        "## decoder",
        "",
        *decoder_section(ev.get("decoder", {}), movq, unet, build.get("refine"), _latent_channels(demo)),
    ]
    lines += [
        "",
        "## Known limits",
        "",
        "- The world is a cartoon: flat colours, one instance per kind, no occlusion beyond hats on heads.",
        *[
            f"- The {name} was trained on world version {v} (the world has changed since); its figures "
            f"above are measured on version {world.VERSION} scenes, and `sae-studio demo build --stages {name} "
            f"--force` "
            "retrains it."
            for name, v in older.items()
        ],
        *(
            [
                "- Concepts below their targets above are the tiny CLIP's middle layer's weakness before the SAE's:",
                "  where even a linear detector trained on every token of that layer (max over tokens) separates a",
                "  concept poorly, no SAE latent there does better. The CLIP's presence loss at that layer is there",
                "  for this reason; the recipe is being improved (see the project's issue tracker).",
            ]
            if min(v["auroc"] for v in ev["sae"]["concepts"].values()) < 0.95
            else []
        ),
        "- The CLIP's text side knows only the world's vocabulary; prompts outside it give arbitrary embeddings.",
        "- Figures come from one seed each; rebuilding on another machine gives close, not identical, numbers",
        "  (thread counts change float summation order).",
        "",
        "Rebuild: `sae-studio demo build --force` (resumable; `--quick` makes toy versions in under two minutes).",
    ]
    lines += ["", *HISTORY.read_text().splitlines()]  # the measurements behind the recipe's constants
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
