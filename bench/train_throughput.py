"""Training throughput of the project's TopK SAE against sparsify, SAELens and overcomplete.

All trainers run in this one process on the same random data (d_in 768, 16,384 latents, k 32,
batch 1,024 by default) and are timed over the same number of steps, so the printed ratios
hold whatever else the machine is doing. The limit is one dense encoder GEMM
[batch x d_in] @ [d_in x latents] in the fastest dtype this machine has (bf16 where the CPU
multiplies bf16 natively, else fp32): a TopK step cannot be cheaper than choosing its top k.

A quality check follows: the project's trainer and sparsify's SparseCoder train for the same
tokens on real activations (a tiny open_clip ViT over generated images) and their held-out
FVU is compared.

    python bench/train_throughput.py            # full table, last line: ratio_vs_sparsify=R limit_fraction=F
    python bench/train_throughput.py --quick    # smaller sizes, for a smoke run
    python bench/train_throughput.py --device cuda   # the same table on a GPU (sparsify with its Triton kernels)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sae import atomic  # noqa: E402
from sae.activations import MANIFEST_NAME, ActivationStore, Manifest, ShardInfo, _write_shard  # noqa: E402
from sae.train import TrainConfig, Trainer, cpu_has_fast_bf16  # noqa: E402


def _shim_matplotlib() -> None:
    """overcomplete 0.3.0 imports matplotlib.cm.get_cmap, which matplotlib 3.9 removed."""
    try:
        import matplotlib
        import matplotlib.cm as cm

        if not hasattr(cm, "get_cmap"):
            cm.get_cmap = matplotlib.colormaps.get_cmap
    except ImportError:
        pass


DEVICE = torch.device("cpu")  # where every contender runs (--device)


def sync() -> None:
    """Wait for the device's queued work, so a step's time is its own."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[torch.Tensor], None], batches: list[torch.Tensor], warmup: int = 1) -> float:
    """Median seconds per step over ``batches`` after ``warmup`` untimed steps."""
    for x in batches[:warmup]:
        step(x)
    times = []
    for x in batches[warmup:]:
        sync()
        t = time.perf_counter()
        step(x)
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def store_from(folder: Path, data: torch.Tensor, shard_rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    infos = []
    for i in range(0, len(data), shard_rows):
        name = f"shard-{i // shard_rows:05d}.npy"
        _write_shard(folder / name, data[i : i + shard_rows].numpy().astype(np.float32))
        infos.append(ShardInfo(name, min(shard_rows, len(data) - i), i, i + 1))
    m = Manifest(
        model="bench",
        fingerprint="0",
        layer=0,
        token_set="all",
        d=data.shape[1],
        dtype="fp32",
        tokens_per_image=1,
        shard_images=1,
        sources=[str(i) for i in range(len(infos))],
        shards=infos,
        complete=True,
    )
    atomic.write_json(folder / MANIFEST_NAME, m.to_json())
    return folder


# -- the contenders: one training step each, as each library's own trainer takes it ------------


def ours(store: Path, out: Path, d_sae: int, k: int, batch: int, lr: float) -> tuple[Trainer, Callable]:
    cfg = TrainConfig(
        acts=str(store),
        out=str(out),
        width=d_sae,
        k=k,
        batch_size=batch,
        lr=lr,
        tokens=10**9,
        checkpoint_every=10**9,
        device=str(DEVICE),
    )
    trainer = Trainer(cfg, progress=False)
    return trainer, trainer.train_step


def sparsify_step(d_in: int, d_sae: int, k: int, lr: float, lr_scale: Callable[[int], float] | None = None):
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k), device=DEVICE)
    # sparsify's trainer with optimizer="adam" uses torch.optim.Adam on these parameters.
    opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10)
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=DEVICE)
    state = {"step": 0}

    def step(x: torch.Tensor) -> None:
        if lr_scale is not None:
            for g in opt.param_groups:
                g["lr"] = lr * lr_scale(state["step"])
        dead = since_fired >= 10_000_000
        out = sae(x, dead_mask=dead)
        loss = out.fvu + out.auxk_loss / 32
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
        since_fired.add_(x.shape[0])
        since_fired[out.latent_indices.flatten()] = 0
        state["step"] += 1

    return sae, step


def saelens_step(d_in: int, d_sae: int, k: int, lr: float):
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device=str(DEVICE)))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    n = {"step": 0}

    def step(x: torch.Tensor) -> None:
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=n["step"], is_logging_step=False
            )
        )
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        n["step"] += 1

    return step


def overcomplete_step(d_in: int, d_sae: int, k: int, lr: float):
    _shim_matplotlib()
    from overcomplete.sae import TopKSAE

    sae = TopKSAE(d_in, nb_concepts=d_sae, top_k=k, device=str(DEVICE))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)

    def step(x: torch.Tensor) -> None:
        _pre, _z, x_hat = sae(x)
        loss = (x - x_hat).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def plain_topk_step(d_in: int, d_sae: int, k: int, lr: float):
    """The textbook autograd TopK SAE in fp32: Linear -> topk -> scatter -> Linear."""
    enc, dec = torch.nn.Linear(d_in, d_sae, device=DEVICE), torch.nn.Linear(d_sae, d_in, device=DEVICE)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)

    def step(x: torch.Tensor) -> None:
        pre = enc(x)
        v, i = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, i, v.relu())
        loss = (dec(f) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def our_stages(trainer: Trainer, batches: list[torch.Tensor]) -> dict[str, float]:
    """Median seconds per step of each stage of the project's step: the encoder (GEMM and top k),
    the backward pass, Adam, and the rest (losses, bookkeeping, the decoder's renormalisation)."""
    from sae import kernels

    spent: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            sync()
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            sync()
            spent.setdefault(name, []).append(time.perf_counter() - t)
            return out

        return run

    saved = kernels.topk_codes, kernels.topk_backward, trainer.optimizer.step
    kernels.topk_codes = timed("encoder: GEMM and top k", kernels.topk_codes)
    kernels.topk_backward = timed("backward", kernels.topk_backward)
    trainer.optimizer.step = timed("Adam", trainer.optimizer.step)
    try:
        whole = time_steps(trainer.train_step, batches)
    finally:
        kernels.topk_codes, kernels.topk_backward, trainer.optimizer.step = saved
    stages = {name: statistics.median(times[1:]) for name, times in spent.items()}
    stages["the rest"] = whole - sum(stages.values())
    return stages


def gemm_seconds(batch: int, d_in: int, d_sae: int, dtype: torch.dtype, reps: int = 3) -> float:
    x = torch.randn(batch, d_in, device=DEVICE).to(dtype)
    w = torch.randn(d_sae, d_in, device=DEVICE).to(dtype)
    return time_steps(lambda _: x @ w.T, [x] * (reps + 1))


# -- quality on real activations -----------------------------------------------------------------


def real_activations(n_images: int, seed: int = 0) -> torch.Tensor:
    """Middle-layer residuals of a tiny random ViT-B-16-shaped open_clip model over generated
    images of coloured shapes (a stand-in until the demo world's trained CLIP exists)."""
    import open_clip
    from PIL import Image, ImageDraw

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import tiny_clip_config

    from sae.backbone import Backbone

    cfg = tiny_clip_config("ViT-B-16", width=64, image_size=64)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg).eval()
    bb = Backbone(model, "tiny", layer=6)
    rng = np.random.default_rng(seed)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1)
    out = []
    for start in range(0, n_images, 64):
        pix = []
        for _ in range(min(64, n_images - start)):
            im = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3)))
            draw = ImageDraw.Draw(im)
            for _ in range(rng.integers(1, 4)):
                x0, y0 = rng.integers(0, 48, 2)
                w, h = rng.integers(8, 32, 2)
                shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
                shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            t = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
            pix.append((t - mean) / std)
        with torch.no_grad():
            out.append(bb.prefix(torch.stack(pix)).reshape(-1, bb.width))
    return torch.cat(out)


def quality(tokens: int, batch: int, tmp: Path) -> tuple[float, float]:
    data = real_activations(3000)
    held_out = data[-4096:].to(DEVICE)
    store = store_from(tmp / "real", data[:-4096], shard_rows=8192)
    d_in = data.shape[1]
    d_sae, k, lr = 8 * d_in, 16, 1e-3
    trainer, step = ours(store, tmp / "q-ours", d_sae, k, batch, lr)
    trainer.total_steps = tokens // batch
    sp, sp_step = sparsify_step(
        d_in, d_sae, k, lr, lr_scale=lambda s: min(1.0, (s + 1) / max(1, (tokens // batch) // 20))
    )
    with torch.no_grad():  # same start: data-mean b_dec, as our initialisation does (in raw scale)
        sp.b_dec.copy_(data[:-4096].mean(0).to(DEVICE))
    stream = ActivationStore(store).batches(batch, seed=0)
    for _ in range(tokens // batch):
        x = next(stream).to(DEVICE)
        step(x)
        sp_step(x)

    def fvu(recon: torch.Tensor) -> float:
        return float((recon - held_out).pow(2).sum() / (held_out - held_out.mean(0)).pow(2).sum())

    with torch.no_grad():
        return fvu(trainer.model(held_out).reconstruction), fvu(sp(held_out).sae_out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--latents", type=int, default=16384)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=6, help="timed steps per trainer (after one warm-up)")
    p.add_argument("--quality-tokens", type=int, default=2_000_000, help="tokens for the FVU comparison (0: skip)")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--device", default="cpu", help="cpu or cuda (then sparsify runs its Triton kernels)")
    a = p.parse_args()
    global DEVICE
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda asked for, but this machine has no CUDA device torch can use.")
    if DEVICE.type != "cuda":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # sparsify's import fails without a GPU otherwise
    if a.quick:
        a.d_in, a.latents, a.batch, a.steps, a.quality_tokens = 128, 2048, 256, 3, 100_000
    if DEVICE.type == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(DEVICE)}")
    else:
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_fast_bf16()}"
        )
    print(f"d_in={a.d_in} latents={a.latents} k={a.k} batch={a.batch}, median of {a.steps} steps")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(a.batch, a.d_in, generator=g).to(DEVICE) for _ in range(a.steps + 1)]
    lr = 2e-4

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = store_from(tmp / "random", torch.cat(batches[:2]).cpu(), shard_rows=a.batch)
        trainer, step = ours(store, tmp / "ours", a.latents, a.k, a.batch, lr)
        results[f"sae-studio TopK ({str(trainer.mm_dtype).split('.')[-1]} GEMM)"] = time_steps(step, batches)
        stages = our_stages(trainer, batches)
        del trainer, step
        contenders = {
            "sparsify SparseCoder": lambda: sparsify_step(a.d_in, a.latents, a.k, lr)[1],
            "SAELens TopKTrainingSAE": lambda: saelens_step(a.d_in, a.latents, a.k, lr),
            "overcomplete TopKSAE": lambda: overcomplete_step(a.d_in, a.latents, a.k, lr),
            "plain autograd TopK (fp32)": lambda: plain_topk_step(a.d_in, a.latents, a.k, lr),
        }
        for name, make in contenders.items():
            try:
                results[name] = time_steps(make(), batches)
            except Exception as e:  # a peer that will not install or run here: say so, go on
                print(f"  ({name} skipped: {type(e).__name__}: {e})")
        gemm = {
            str(dt).split(".")[-1]: gemm_seconds(a.batch, a.d_in, a.latents, dt)
            for dt in (torch.float32, torch.bfloat16, *((torch.float16,) if DEVICE.type == "cuda" else ()))
        }

        print(f"\n{'trainer':<38}{'tokens/s':>12}{'s/step':>10}")
        for name, sec in results.items():
            print(f"{name:<38}{a.batch / sec:>12,.0f}{sec:>10.3f}")
        for dt, sec in gemm.items():
            print(f"{'limit: one encoder GEMM in ' + dt:<38}{a.batch / sec:>12,.0f}{sec:>10.3f}")
        print("\nsae-studio's step by stage: " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in stages.items()))

        fvu_line = ""
        if a.quality_tokens:
            ours_fvu, sp_fvu = quality(a.quality_tokens, min(a.batch, 1024), tmp)
            fvu_line = (
                f" fvu_ours={ours_fvu:.4f} fvu_sparsify={sp_fvu:.4f} fvu_rel_diff={(ours_fvu - sp_fvu) / sp_fvu:+.3f}"
            )
            print(
                f"\nquality after {a.quality_tokens:,} tokens of real ViT activations: held-out FVU "
                f"ours {ours_fvu:.4f}, sparsify {sp_fvu:.4f}"
            )

    ours_s = next(v for k, v in results.items() if k.startswith("sae-studio"))
    sp_s = results.get("sparsify SparseCoder")
    best_gemm = min(gemm.values())
    ratio = f"{sp_s / ours_s:.2f}" if sp_s else "nan"
    print(
        f"\nlimit_fraction uses the fastest GEMM here; against bf16 alone it is "
        f"{gemm['bfloat16'] / ours_s:.2f}.{fvu_line}"
    )
    print(f"ratio_vs_sparsify={ratio} limit_fraction={best_gemm / ours_s:.2f}")


if __name__ == "__main__":
    main()
