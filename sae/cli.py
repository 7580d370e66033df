"""``sae-studio``: the command line. Subcommand options are generated from the config dataclasses."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sae.errors import UserError
from sae.memory import keep_freed_memory

DESCRIPTION = """\
sae-studio: find the features a sparse autoencoder (SAE) sees inside a CLIP vision encoder,
and edit images by them. With no command it opens the editor (sae-studio IMAGE opens it
with that image).

Typical run on your own images:
  sae-studio extract --model ViT-B-16:openai --images photos/ --out acts/
  sae-studio train --acts acts/ --out my-sae/ --k 32 --expansion 16

Every long command shows progress, can be stopped with Ctrl+C, and resumes
(extract: run it again; train: add --resume).
"""


# which tokens an edit touches (sae.steer.TOKENS, written out so parsing needs no torch), or
# "home": where the latent fires, from the SAE's feature index
TOKEN_CHOICES = ("home", "all", "patches", "class")
TOKENS_HELP = (
    "which tokens {} edits: home (where the latent fires in the indexed images: the patches "
    "alone for a latent that hardly fires on the class token, else all), all, patches or class "
    "(default: %(default)s)"
)


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--option`` per field of ``cls``, with the field's help, type and default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
            typ = next(a for a in typing.get_args(typ) if a is not type(None))
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if typ is bool:
            parser.add_argument(flag, dest=f.name, action="store_true", help=help_text)
            continue
        default = None if required else f.default
        if not required and default is not None:
            help_text += f" (default: {default:g})" if isinstance(default, float) else f" (default: {default})"
        parser.add_argument(flag, dest=f.name, type=typ, required=required, default=default, help=help_text)


SAE_HELP = "SAE folder (default: the shipped demo SAE)"


def add_sae_options(parser: argparse.ArgumentParser) -> None:
    """--sae, --model and --device: the options of every command that opens an SAE on its encoder."""
    parser.add_argument("--sae", default=None, help=SAE_HELP)
    parser.add_argument("--model", default=None, help="encoder (default: the one named in the SAE's metadata)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: %(default)s)")


def _config_from(cls: type, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def build_parser() -> argparse.ArgumentParser:
    from sae.configs import ExtractConfig, TrainConfig

    parser = argparse.ArgumentParser(
        prog="sae-studio", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "extract",
        help="write a model's layer-L activations over an image folder to shards",
        description="Run the encoder up to --layer over every image under --images and write the "
        "residual stream to fixed-size shards in --out. Run it again to resume.",
    )
    add_dataclass_options(p, ExtractConfig)

    p = sub.add_parser(
        "train",
        help="train a TopK or ReLU SAE on extracted activations",
        description="Train an SAE on an activations folder and save it in SAELens' layout. "
        "Checkpoints are written as it goes; --resume continues a stopped run exactly.",
    )
    add_dataclass_options(p, TrainConfig)
    p.add_argument("--eval-images", type=int, default=64, help="images for the splice cosine at the end (0: skip)")

    p = sub.add_parser(
        "index",
        help="index an SAE's latents over an image folder, and label them",
        description="Per latent: firing frequency, mean and max activation, a histogram and the top 16 "
        "images (thumbnails saved); then an automatic label from the CLIP text tower. Incremental: run it "
        "again after adding images. Without --sae it indexes the shipped demo SAE.",
    )
    add_sae_options(p)
    p.add_argument("--images", required=True, help="folder of images, searched recursively")
    p.add_argument("--no-labels", action="store_true", help="skip the automatic labels")
    p.add_argument(
        "--vocabulary",
        default="auto",
        help="label words: demo, everyday (ImageNet classes, colours, styles, scenes), a text file "
        "with one concept per line, or auto (demo for the demo world's CLIP, else everyday)",
    )

    p = sub.add_parser(
        "features",
        help="search an SAE's latents by text, or list what fires on an image",
        description="Rank latents by how well their effect matches a text (--search) or by how strongly "
        "they fire on an image (--image). Without --sae it uses the shipped demo SAE.",
    )
    add_sae_options(p)
    p.add_argument(
        "--search",
        default=None,
        help="text to search for, e.g. 'cat': latents ranked by how adding them moves images toward the text, how "
        "their activation tracks CLIP's match of the indexed images to it, and label match",
    )
    p.add_argument("--image", default=None, help="list the latents that fire on this image")
    p.add_argument("--top", type=int, default=10, help="rows to print")
    p.add_argument("--rename", nargs=2, metavar=("LATENT", "LABEL"), help="give a latent a label of your own")
    p.add_argument(
        "--preview",
        type=int,
        default=None,
        metavar="LATENT",
        help="causal preview: paint what LATENT does on its own on a neutral image (writes -o)",
    )
    p.add_argument(
        "--value",
        type=float,
        default=None,
        help="how much to add for --preview (default: 4 times the latent's typical max activation)",
    )
    p.add_argument("-o", "--out", default="preview.png", help="PNG for --preview (default: preview.png)")
    p.add_argument("--decoder", default="demo", help="decoder for --preview: demo, kandinsky-2.2 or a pipeline folder")
    p.add_argument("--seed", type=int, default=0, help="noise seed for --preview")
    p.add_argument("--tokens", choices=TOKEN_CHOICES, default="home", help=TOKENS_HELP.format("--preview"))

    p = sub.add_parser(
        "edit",
        help="apply a preset or quick edits to images (batch, deterministic)",
        description="Edit each IMAGE by a preset (--preset) and/or quick edits (--add/--set/--scale "
        "LATENT=VALUE, applied after the preset's), decode it, and write OUTDIR/NAME.png with the preset "
        "in its text chunk. The same preset and seed give bit-identical files. Without --sae/--decoder it "
        "uses the shipped demo models.",
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--preset", default=None, help="preset JSON (from the editor or a previous run)")
    for mode in ("add", "set", "scale"):
        p.add_argument(
            f"--{mode}", action="append", default=[], metavar="LATENT=VALUE", help=f"{mode} a latent's activation"
        )
    p.add_argument(
        "--tokens",
        choices=TOKEN_CHOICES,
        default="home",
        help=TOKENS_HELP.format("each quick edit (--add/--set/--scale)"),
    )
    add_sae_options(p)
    p.add_argument(
        "--decoder",
        default=None,
        help="demo, kandinsky-2.2 or a pipeline folder (default: the preset's, else the one that paints the SAE's "
        "encoder, else demo)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps (default: the preset's, else the decoder's: 8 for demo, 30 for the hub ones)",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        help="img2img strength 0..1 (default: the preset's, else the decoder's: 0.9 for demo, 0.5 for the hub ones)",
    )
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the preset's, else 3)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: the preset's, else 0)")
    p.add_argument(
        "--region",
        choices=("edited", "whole"),
        default=None,
        help="repaint only where the edits change the picture and keep the rest of the input (edited), "
        "or repaint the whole image (whole) (default: the preset's, else edited; a preset made "
        "before regions existed repaints the whole image)",
    )
    p.add_argument("--fp16", action="store_true", help="run a hub decoder in half precision (GPU)")
    p.add_argument(
        "--cpu-offload", action="store_true", help="keep a hub decoder's parts on the CPU until used (small GPUs)"
    )

    p = sub.add_parser(
        "sweep",
        help="paint one slider at several positions side by side (its range at a glance)",
        description="Paint IMAGE with one latent's slider at each of --values (slider units: calibrated, "
        "so one unit moves the picture's embedding most of the way pictures showing the feature lie from "
        "ordinary ones) and write the pictures side "
        "by side into one PNG, each captioned with its position and the amount it adds. Positions beyond "
        "the slider's range (where the picture stops changing) are clipped to it.",
    )
    p.add_argument("image", help="image file")
    p.add_argument("--latent", type=int, required=True, help="the latent whose slider is swept")
    p.add_argument(
        "--values", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0, 2.0], help="slider positions in units"
    )
    p.add_argument("-o", "--out", default="sweep.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--preset", default=None, help="a preset whose other sliders stay set while this one moves")
    p.add_argument("--tokens", choices=TOKEN_CHOICES, default="home", help=TOKENS_HELP.format("the slider"))
    add_sae_options(p)
    p.add_argument("--decoder", default=None, help="demo, kandinsky-2.2 or a pipeline folder (default: as edit)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's or decoder's)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: the preset's, else 0)")
    p.add_argument("--height", type=int, default=192, help="height of each picture in the strip (default: 192)")

    p = sub.add_parser(
        "calibrate",
        help="measure calibrated slider units for some or all latents (the editor does it per slider)",
        description="Measure each latent's calibrated slider unit and range: how far its slider moves the "
        "image embedding, upward on neutral pictures and downward on the indexed pictures it fires on most, "
        "so that one unit up moves it 0.8 of the way those pictures lie from ordinary indexed ones (one down "
        "takes away its typical maximum activation) and each side's range ends where the picture stops "
        "changing. Kept beside the "
        "SAE's index (index/calibration.json); the editor measures a slider's latent when it first needs it, "
        "so this is only for measuring many at once.",
    )
    p.add_argument("latents", nargs="*", type=int, help="latents to measure (default: every latent)")
    add_sae_options(p)

    p = sub.add_parser(
        "induce",
        help="make a named slider from example images (a sparse mix of latents)",
        description="Induce a slider from 3 to 20 images that show a concept (and, optionally, images that "
        "don't): the latents whose image-level activation is consistently higher on the examples, each "
        "weighted by how much higher (sae/induce.py explains the choice). Writes a preset holding the slider "
        "at --value; apply it with sae-studio edit --preset, or import it in the editor. Without "
        "--negatives the comparison images are a sample of those the SAE's feature index covered.",
    )
    p.add_argument("examples", nargs="+", help="image files or folders that show the concept")
    p.add_argument("--negatives", nargs="+", default=None, help="image files or folders without it")
    p.add_argument("--name", required=True, help="the slider's name, e.g. 'red object'")
    p.add_argument(
        "--value",
        type=float,
        default=1.0,
        help="slider value stored in the preset: 1 adds the examples' average difference (default 1)",
    )
    p.add_argument("-o", "--out", required=True, help="preset JSON to write")
    add_sae_options(p)

    p = sub.add_parser(
        "models",
        help="list the named encoder + decoder recipes, their sizes and what is cached",
        description="The real-model recipes (Kandinsky 2.2 with ViT-bigG-14, SD 2.1 unCLIP with ViT-H-14): "
        "download size, disk, GPU memory per plan, and whether the Hugging Face cache holds them already.",
    )

    p = sub.add_parser(
        "import",
        help="make another tool's SAE (SAELens, sparsify, Prisma, saev, MSAE, clip-sae-128) a project SAE",
        description="Read an SAE folder written by SAELens (cfg.json + sae_weights.safetensors) or sparsify "
        "(cfg.json + sae.safetensors), or a published torch pickle (the Kandinsky 2.2 embedding SAE "
        "gytdau/clip-sae-128, Prisma's config.json + weights.pt, saev's sae.pt, MSAE's .pth), and save it once "
        "as a project SAE (SAELens layout, safetensors) that names its encoder and layer. Pickles are read "
        "with torch's weights-only loader and nothing in them runs. The layer comes from the hook point "
        "(blocks.9.hook_resid_pre -> 9, blocks.9.hook_resid_post or layers.9 -> 10) unless --layer says.",
    )
    p.add_argument(
        "source",
        help="SAE folder, a published .pt/.pth file (or the folder holding it), or a hub SAE hf:OWNER/REPO[/FOLDER] "
        "(or hf:OWNER/REPO/FOLDER/NAME.pt; downloaded once into the Hugging Face cache)",
    )
    p.add_argument("-o", "--out", required=True, help="project SAE folder to write")
    p.add_argument(
        "--layer", default=None, help="residual stream entering block L, or 'embedding' (default: from the hook point)"
    )
    p.add_argument(
        "--model", default=None, help="encoder it belongs to, e.g. ViT-B-16:openai (default: what the folder says)"
    )
    p.add_argument(
        "--images",
        default=None,
        help="folder of pictures like the SAE's training set, to estimate the input normalisation an early saev "
        "file did not save (up to 1,000 pictures are read)",
    )

    p = sub.add_parser(
        "open",
        help="open the editor on an SAE folder and its own encoder (sae-studio IMAGE: on the demo)",
        description="Open the editor on the SAE in --sae and the encoder it names, then the decoder known to "
        "paint that encoder's embeddings (Kandinsky 2.2 for ViT-bigG-14; none known: choose one in the "
        "window), optionally with IMAGE open. Without --sae it opens on the shipped demo models.",
    )
    p.add_argument("image", nargs="?", default=None, help="an image to open")
    p.add_argument("--sae", default=None, help=SAE_HELP)

    p = sub.add_parser(
        "export",
        help="write an SAE in SAELens' or sparsify's layout",
        description="Export an SAE folder for other tools: --to saelens (what sae-studio writes anyway, "
        "without its index) or --to sparsify (TopK SAEs; the folder is named after the hookpoint layers.L-1).",
    )
    p.add_argument("--sae", default=None, help=SAE_HELP)
    p.add_argument("--to", choices=("saelens", "sparsify"), required=True, help="target layout")
    p.add_argument("-o", "--out", required=True, help="folder to write")

    demo = sub.add_parser(
        "demo",
        help="build or evaluate the shipped demo models",
        description="The demo world's models: a tiny CLIP, a judge and the default SAE.",
    )
    demo_sub = demo.add_subparsers(dest="demo_command", metavar="ACTION", required=True)
    b = demo_sub.add_parser(
        "build",
        help="rebuild the demo models from their seeds (resumable)",
        description="Train the demo models stage by stage. Stages whose output exists are "
        "skipped; an interrupted stage resumes from its checkpoint.",
    )
    b.add_argument("--quick", action="store_true", help="toy-sized models in under two minutes (for tests)")
    b.add_argument(
        "--stages",
        default="clip,tune,judge,sae,movq,decoder,refine",
        help="comma-separated stages (default: all); tune teaches the CLIP's first blocks to show fish "
        "at the SAE's layer, its embedding held; refine sharpens the decoder's autoencoder after its UNet",
    )
    b.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop the CLIP, tune, judge, movq, decoder or refine training at a checkpoint after this many minutes; "
        "run again to continue",
    )
    b.add_argument("--out", default=None, help="folder for the models (default: the shipped assets/demo)")
    b.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    b.add_argument("--force", action="store_true", help="rebuild stages whose output exists")
    b.add_argument(
        "--warm-start",
        default=None,
        metavar="DECODER",
        help="start the decoder stage's UNet from this trained decoder folder (e.g. the shipped "
        "assets/demo/decoder, after retraining the CLIP or the movq; for a movq of another latent width "
        "all but the UNet's first and last convolution carry over), on one of the schedules of "
        "--warm-schedule instead of the 5,500 steps from scratch",
    )
    b.add_argument(
        "--warm-schedule",
        choices=("relearn", "continue", "edits"),
        default=None,
        help="with --warm-start: relearn (default; 3,000 steps at half the rate, after retraining the CLIP "
        "or the movq), continue (10,000 steps at the full rate: the same UNet trained on, on the same "
        "CLIP and movq) or edits (6,000 steps in three phases: half of each batch teaching it to paint "
        "what an embedding adds to or takes from its img2img start, then fewer such pairs at a lower "
        "rate while img2img recovers; the shipped UNet's last schedule)",
    )
    e = demo_sub.add_parser(
        "eval",
        help="measure every figure of the demo models and print a table",
        description="Evaluate the demo models on held-out world scenes; writes eval.json, the "
        "decoder's sample grid and the model card (README.md) to --out.",
    )
    e.add_argument("--models", default=None, help="folder of the models (default: the shipped ones)")
    e.add_argument(
        "--out",
        default=None,
        help="folder for the results (default: the --models folder, or for the "
        "shipped models a folder in your user cache)",
    )
    e.add_argument("--images", type=int, default=2000, help="held-out scenes")
    return parser


def cmd_extract(args: argparse.Namespace) -> int:
    from sae import distributed
    from sae.activations import extract
    from sae.backbone import load_backbone, parse_layer
    from sae.configs import ExtractConfig
    from sae.device import pick_device

    cfg = _config_from(ExtractConfig, args)
    if distributed.launched():  # torchrun --nproc-per-node N -m sae extract ...: each rank its own shards
        cfg.device = distributed.init(cfg.device)
    backbone = load_backbone(cfg.model, parse_layer(cfg.layer), device=pick_device(cfg.device))
    manifest = extract(
        backbone,
        cfg.images,
        cfg.out,
        token_set=cfg.tokens,
        dtype=cfg.dtype,
        shard_mb=cfg.shard_mb,
        batch_size=cfg.batch_size,
    )
    if distributed.is_main():
        print(
            f"{manifest.rows:,} activations of {backbone.model_id} at layer {backbone.layer} "
            f"({len(manifest.shards)} shards, {len(manifest.skipped)} files skipped) in {cfg.out}"
        )
    distributed.finish()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sae import distributed
    from sae.train import TrainConfig, Trainer

    cfg = _config_from(TrainConfig, args)
    if distributed.launched():  # torchrun --nproc-per-node N -m sae train ...
        cfg.device = distributed.init(cfg.device)
    trainer = Trainer(cfg, progress=distributed.is_main())
    model = trainer.run()
    if distributed.is_main():
        metrics = model.metadata.metrics
        if args.eval_images > 0:
            cos = _splice_cosine(trainer, args.eval_images)
            if cos is not None:
                metrics["splice_cosine"] = cos
                model.save(cfg.out)
        print(f"SAE saved to {cfg.out}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    distributed.finish()
    return 0


def _splice_cosine(trainer, n_images: int) -> float | None:
    from sae.backbone import load_backbone
    from sae.evaluate import load_pixels, splice_cosine

    m = trainer.store.manifest
    try:
        backbone = load_backbone(m.model, m.layer, device=trainer.device)
        paths = [Path(m.images_root) / s for s in m.sources[-n_images:]]
        pixels = load_pixels(backbone, paths, limit=n_images)
    except UserError as e:
        print(f"warning: splice cosine skipped: {e}", file=sys.stderr)
        return None
    return splice_cosine(backbone, trainer.model, pixels, m.token_set)


def _workspace(args: argparse.Namespace):
    """The SAE folder a command names (default: the shipped demo SAE), opened on its encoder."""
    from sae.assets import DEMO
    from sae.device import pick_device
    from sae.workspace import Workspace

    return Workspace.open(args.sae or DEMO / "sae", args.model, device=pick_device(args.device))


def cmd_index(args: argparse.Namespace) -> int:
    from sae.features import build_index
    from sae.make import index_and_label

    ws = _workspace(args)
    folder, sae, backbone = ws.folder, ws.sae, ws.backbone
    if args.no_labels:
        index = build_index(folder, backbone, sae, args.images)
        print(f"indexed {len(index.sources):,} images ({index.tokens:,} tokens) into {folder / 'index'}")
        return 0
    entries = index_and_label(folder, backbone, sae, args.images, args.vocabulary, progress=True)
    print(
        f"indexed {args.images} into {folder / 'index'}; labelled {len(entries):,} latents in {folder / 'labels.json'}"
    )
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    if args.rename:
        latent, label = args.rename
        if not latent.isdigit():
            raise UserError(f"Latent {latent} does not exist; this SAE has latents 0 to {ws.sae.d_sae - 1}.")
        ws.rename(int(latent), label)
        print(f"latent {latent} is now labelled {label!r}")
        return 0
    if args.search:
        hits = ws.search(args.search, top=args.top)
        # the slider unit (typical max activation), what --add/--set values are measured against,
        # and the tokens its edits touch by default (where it fires)
        indexed = ws.index is not None
        print(f"{'latent':>7}  {'score':>6}  " + (f"{'unit':>6}  {'on':<7}  " if indexed else "") + "label")
        for h in hits:
            extra = f"{ws.unit(h.latent):>6.2f}  {ws.home_tokens(h.latent):<7}  " if indexed else ""
            print(f"{h.latent:>7}  {h.score:>6.3f}  " + extra + h.label)
        return 0
    if args.image:
        from sae.demo.build import coverage_warning
        from sae.images import load_image

        session = ws.session()
        session.set_image(load_image(args.image))
        coverage = session.coverage()
        print(f"coverage: {coverage.line()}")
        warning = coverage_warning(coverage, ws.folder)
        if warning:
            print(f"note: {warning}")
        if session.view().is_partial:
            w, h = session.current.image.size
            print(f"note: the encoder reads the centre {min(w, h)}x{min(w, h)} of this {w}x{h} picture")
        print(f"{'latent':>7}  {'max act':>8}  label")
        for f in session.fires(args.top):
            print(f"{f.latent:>7}  {f.activation:>8.3f}  {f.label}")
        return 0
    if args.preview is not None:
        return _preview(args, ws)
    raise UserError("Say what to do: --search TEXT, --image PATH, --preview LATENT or --rename LATENT LABEL.")


@contextlib.contextmanager
def download_bar() -> Iterator[Callable[[int, int], None]]:
    """A byte bar for a hub download (a decoder's, an SAE's), shown once files start to arrive: files
    already in the cache report done at once and show none."""
    from tqdm import tqdm

    bars: list[tqdm] = []

    def report(done: int, total: int) -> None:
        if not bars and total and done >= total:
            return
        if not bars:
            bars.append(tqdm(unit="B", unit_scale=True, desc="download"))
        bars[0].total = total or None  # a hub SAE's size is not known before it arrives
        bars[0].update(done - bars[0].n)

    try:
        yield report
    finally:
        for bar in bars:
            bar.close()


def _preview(args: argparse.Namespace, ws) -> int:
    from sae.decoders import DecodeSettings
    from sae.decoders.registry import load_decoder
    from sae.session import PREVIEW_STRENGTH, PREVIEW_UNITS

    latent = args.preview
    known = 0 <= latent < ws.sae.d_sae
    value = args.value
    if value is None:
        value = (PREVIEW_UNITS * ws.unit(latent) if known else 0.0) or 1.0
    with download_bar() as on_download:
        decoder = load_decoder(args.decoder, ws.backbone, device=ws.backbone.device, on_download=on_download)
    session = ws.session(decoder)
    tokens = ws.tokens_for(args.tokens)(latent) if known else "all"
    settings = DecodeSettings(strength=PREVIEW_STRENGTH, seed=args.seed, decoder=args.decoder)
    image = session.causal_preview(latent, value, settings, tokens=tokens)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(f"latent {latent} ({session.label(latent)}) + {value:.3g} on a neutral image -> {out}")
    return 0


def cmd_induce(args: argparse.Namespace) -> int:
    from sae.induce import induce_from_images

    ws = _workspace(args)
    # without --negatives the comparison images come from the index (comparison_images says
    # what to do when nothing stands in)
    slider = induce_from_images(
        ws.session(), args.examples, args.negatives, args.name, None if args.negatives else ws.index
    )
    ws.preset([slider.edit(args.value, tokens=slider.home_tokens(ws.home_tokens))]).save(args.out)
    print(
        f"slider {slider.name!r} = "
        + " + ".join(f"{w:.2f} x #{i} ({ws.labels.get(i, 'unlabelled')})" for i, w in slider.weights)
    )
    print(
        f"wrote {args.out} (value {args.value:g}); apply it with: sae-studio edit IMAGE --preset {args.out} -o OUTDIR"
    )
    return 0


def _quick_edits(args: argparse.Namespace, ws) -> list:
    from sae.steer import Edit

    tokens = ws.tokens_for(args.tokens)
    edits = []
    for mode in ("add", "set", "scale"):
        for item in getattr(args, mode):
            latent, sep, value = item.partition("=")
            try:
                latent, value = int(latent), float(value)
            except ValueError as e:
                raise UserError(f"--{mode} {item!r} is not LATENT=VALUE (e.g. --{mode} 17=4.0).") from e
            ws.check_latent(latent)
            edits.append(Edit(latent, mode, value, tokens=tokens(latent), label=ws.labels.get(latent, "")))
    return edits


def cmd_edit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sae import presets
    from sae.decoders import DecodeSettings
    from sae.decoders.registry import download_note, load_decoder
    from sae.images import load_image, with_alpha
    from sae.png import save_with_preset

    ws = _workspace(args)
    if args.preset:
        preset = presets.load(args.preset)
        ws.check_preset(preset, source=f"Preset {args.preset}")
        settings = preset.decoder
    else:
        preset = ws.preset()
        settings = DecodeSettings.for_decoder(args.decoder or ws.default_decoder())
    preset.edits = list(preset.edits) + _quick_edits(args, ws)
    asked = {key: getattr(args, key) for key in ("steps", "strength", "guidance", "seed", "region", "decoder")}
    preset.decoder = settings = settings.but(**{k: v for k, v in asked.items() if v is not None})
    note = download_note(settings.decoder)
    if note:
        print(f"note: {note}", file=sys.stderr)
    with download_bar() as on_download:
        decoder = load_decoder(
            settings.decoder,
            ws.backbone,
            device=ws.backbone.device,
            fp16=args.fp16,
            cpu_offload=args.cpu_offload,
            on_download=on_download,
        )
    session = ws.session(decoder)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(args.images, unit="img", desc="edit"):
        try:
            image = load_image(path)
            size_note = decoder.sizes.canvas(*image.size).note()
            if size_note:
                tqdm.write(f"note: {path}: {size_note}", file=sys.stderr)
            session.set_image(image)
            result = session.render(preset.edits, settings)
        except UserError as e:
            tqdm.write(f"warning: {e} Skipped.", file=sys.stderr)
            failed += 1
            continue
        save_with_preset(with_alpha(result, image), out / f"{Path(path).stem}.png", preset)
    print(f"{len(args.images) - failed} edited images in {out}" + (f" ({failed} skipped)" if failed else ""))
    return 1 if failed == len(args.images) else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sae import presets, sweep
    from sae.decoders import DecodeSettings
    from sae.decoders.registry import load_decoder
    from sae.images import load_image
    from sae.steer import Edit

    ws = _workspace(args)
    ws.check_latent(args.latent)
    others, settings = [], DecodeSettings.for_decoder(args.decoder or ws.default_decoder())
    if args.preset:
        preset = presets.load(args.preset)
        ws.check_preset(preset, source=f"Preset {args.preset}")
        others, settings = [e for e in preset.edits if e.latent != args.latent], preset.decoder
    asked = {k: getattr(args, k) for k in ("steps", "seed", "decoder") if getattr(args, k) is not None}
    settings = settings.but(**asked)
    scale = ws.calibration(args.latent).scale(ws.unit(args.latent))
    if not scale.calibrated:
        print(f"note: latent {args.latent}'s slider is not calibrated ({scale.why}).", file=sys.stderr)
    with download_bar() as on_download:
        decoder = load_decoder(settings.decoder, ws.backbone, device=ws.backbone.device, on_download=on_download)
    session = ws.session(decoder)
    session.set_image(load_image(args.image))
    tokens = ws.tokens_for(args.tokens)(args.latent)
    places = sweep.positions(scale, args.values)
    pictures = [
        session.render([*others, Edit(args.latent, "add", scale.amount(p), tokens=tokens)], settings)
        for p in tqdm(places, unit="picture", desc="sweep")
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep.strip(pictures, [sweep.caption(p, scale) for p in places], args.height).save(out)
    print(f"latent {args.latent} ({session.label(args.latent)}) at {', '.join(f'{p:+g}' for p in places)} -> {out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    ws = _workspace(args)
    latents = args.latents or range(ws.sae.d_sae)
    for latent in latents:
        ws.check_latent(latent)
    t0, uncalibrated = time.perf_counter(), 0
    try:
        for n, latent in enumerate(tqdm(latents, unit="latent", desc="calibrate", disable=len(latents) < 2)):
            c = ws.calibration(latent, keep=n % 200 == 199)
            uncalibrated += not c.calibrated
            if len(latents) <= 20:
                tqdm.write(f"#{latent} ({ws.labels.get(latent, 'unlabelled')}): {_calibration_line(c)}")
    finally:  # what was measured is kept, also when stopped: a second run goes on from there
        ws.keep_calibrations()
    took = time.perf_counter() - t0
    print(
        f"{len(latents)} latents in {took:.1f} s ({took / max(1, len(latents)):.2f} s each)"
        + (f", {uncalibrated} left in their old units" if uncalibrated else "")
        + f"; kept in {ws.calibrations.path}"
    )
    return 0


def _calibration_line(c) -> str:
    if not c.calibrated:
        return f"not calibrated: {c.reason}"
    return (
        f"1 unit = +{c.up.unit:.3g} up to {c.up.saturation:.2g} units, "
        f"-{c.down.unit:.3g} down to {c.down.saturation:.2g} units"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    import json

    from sae.demo.build import DEMO, STAGES, build

    if args.demo_command == "build":
        out = Path(args.out) if args.out else DEMO
        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        if args.warm_start and not (Path(args.warm_start) / "unet" / "config.json").is_file():
            raise UserError(f"{args.warm_start} is not a decoder folder (it has no unet/ to start from).")
        if args.warm_schedule and not args.warm_start:
            raise UserError("--warm-schedule needs --warm-start (the decoder folder whose UNet it trains on).")
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise UserError(f"Unknown stage {unknown[0]!r}; the stages are {', '.join(STAGES)}.")
        done = build(
            stages,
            out=out,
            quick=args.quick,
            threads=args.threads,
            force=args.force,
            max_minutes=args.max_minutes,
            warm_start=Path(args.warm_start) if args.warm_start else None,
            warm_schedule=args.warm_schedule or "relearn",
        )
        print(
            json.dumps(done, indent=2) if done else f"Nothing to build: the stages exist in {out} (--force rebuilds)."
        )
        return 0
    from sae.cache import cache_root
    from sae.demo.card import write_card
    from sae.demo.evaluate import evaluate, table

    models = Path(args.models) if args.models else DEMO
    for stage in ("clip", "judge", "sae"):
        if not (models / stage).exists():
            raise UserError(f"{models / stage} is missing; run sae-studio demo build first.")
    report = Path(args.out) if args.out else models if args.models else cache_root() / "demo-eval"
    print(table(evaluate(models, n_held_out=args.images, out=report)))
    print(f"(written to {report / 'eval.json'}; model card {write_card(models, report)})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from sae.recipes import RECIPES, estimate, table

    print(table())
    print()
    for r in RECIPES.values():
        print(f"{r.note}.\n  {estimate(r)}")
    print("\nTrain an SAE for a recipe with sae-studio extract --model ENCODER --layer LAYER, then sae-studio train.")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from sae.backbone import parse_layer
    from sae.importing import import_sae

    with download_bar() as on_download:
        done = import_sae(
            args.source, args.out, parse_layer(args.layer), args.model, args.images, on_download=on_download
        )
    print(done.summary())
    for note in done.notes:
        print(f"note: {note}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sae.assets import DEMO
    from sae.formats import load_any, save_sparsify

    sae = load_any(Path(args.sae) if args.sae else DEMO / "sae")
    out = Path(args.out)
    if args.to == "sparsify":
        save_sparsify(sae, out)
    else:
        sae.save(out)
    print(f"wrote {out} ({args.to} layout)")
    return 0


COMMANDS = {
    "models": cmd_models,
    "import": cmd_import,
    "export": cmd_export,
    "extract": cmd_extract,
    "train": cmd_train,
    "index": cmd_index,
    "features": cmd_features,
    "edit": cmd_edit,
    "induce": cmd_induce,
    "sweep": cmd_sweep,
    "calibrate": cmd_calibrate,
    "demo": cmd_demo,
    "open": lambda args: open_editor(args.image, args.sae),
}


def _has_display() -> bool:
    import os

    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_editor(image: str | None = None, sae: str | None = None) -> int:
    if not _has_display():
        print(
            "error: no display found, so the editor cannot open a window; run sae-studio on a desktop, "
            "under Xvfb, or use the command line (sae-studio --help).",
            file=sys.stderr,
        )
        return 2
    if sae is not None and not Path(sae).is_dir():
        print(f"error: {sae} is not a folder; --sae takes an SAE folder.", file=sys.stderr)
        return 2
    from editor.app import run

    return run(image, sae)


def main(argv: Sequence[str] | None = None) -> int:
    keep_freed_memory()  # before any thread starts (sae.memory says why)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        return open_editor()
    if len(argv) == 1 and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return open_editor(argv[0])  # sae-studio IMAGE
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    import sae.demo  # noqa: F401  registers the demo world with the edit engine (sae.worlds)

    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again (train: with --resume) to continue.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (sae-studio features ... | head): nothing to say
        import os

        # as Python's signal docs advise: the interpreter's final flush must not hit the closed pipe again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug, not bad input: say so briefly, traceback on --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
