"""Training throughput of the project's TopK SAE against sparsify, SAELens and overcomplete.

All trainers run in this one process on the same random data (d_in 768, 16,384 latents, k 32,
batch 1,024 by default) and are timed over the same number of steps, so the printed ratios
hold whatever else the machine is doing. The limit is one dense encoder GEMM
[batch x d_in] @ [d_in x latents] in the fastest dtype this machine has (bf16 where the CPU
multiplies bf16 natively, else fp32): a dense TopK step cannot be cheaper than choosing its top
k. The sketch encoder (``--encoder sketch``) skips most of that GEMM and is timed beside it.

A quality check follows: the project's dense and sketch trainers and sparsify's SparseCoder
train for the same tokens on the shipped demo CLIP's activations; held-out FVU, the sketch's
recall of the exact top k and the latents that never fired are compared, as means over
``--quality-draws`` draws of those activations (one draw's FVU moves by up to 4% with the
trainer's tie choices and precision, more than the 2% the comparison is about). The wide run repeats
the timing and the dense-against-sketch quality at 131,072 latents.

    python bench/train_throughput.py            # full table; last lines: the sketch's figures at the main width,
                                                # ratio_vs_sparsify=R limit_fraction=F (the dense step) and the
                                                # wide run's: wide: ratio_vs_sparsify=R2 recall=Q fvu_rel_diff=D
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


def ours(
    store: Path, out: Path, d_sae: int, k: int, batch: int, lr: float, encoder: str = "dense", tokens: int = 10**9
) -> tuple[Trainer, Callable]:
    """The project's trainer as a run of ``tokens`` sets it up (its warm-up, and AuxK counting a
    latent dead after a tenth of the run)."""
    cfg = TrainConfig(
        acts=str(store),
        encoder=encoder,
        out=str(out),
        width=d_sae,
        k=k,
        batch_size=batch,
        lr=lr,
        tokens=tokens,
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


def demo_activations(n_images: int, seed: int = 7) -> torch.Tensor:
    """Residuals entering block 3 of the shipped demo CLIP over ``n_images`` demo-world scenes
    (every token), shuffled: a trained encoder's activations, with its real structure."""
    from sae.backbone import load_backbone
    from sae.demo.clip import to_pixels
    from sae.demo.data import world_data

    clip = Path(__file__).resolve().parents[1] / "assets" / "demo" / "clip"
    bb = load_backbone(f"local-dir:{clip}", layer=3)
    data = world_data(n_images, seed=seed)
    with torch.no_grad():
        acts = torch.cat(
            [bb.prefix(to_pixels(data.images[i : i + 100])).reshape(-1, bb.width) for i in range(0, n_images, 100)]
        )
    return acts[torch.randperm(len(acts), generator=torch.Generator().manual_seed(seed))]


def quality(
    data: torch.Tensor, tokens: int, d_sae: int, k: int, batch: int, tmp: Path, peers: bool, lr: float = 1e-3
) -> dict:
    """Held-out FVU after ``tokens`` for the project's dense and sketch encoders (and sparsify's
    SparseCoder with ``peers``), trained on the same batches; the sketch's median recall and each
    trainer's fraction of latents that never fired."""
    held_out = data[-8192:].to(DEVICE)
    tmp = Path(tempfile.mkdtemp(dir=tmp))  # each draw trains in folders of its own
    store = store_from(tmp / f"real-{d_sae}", data[:-8192], shard_rows=16384)
    d_in, steps = data.shape[1], tokens // batch
    trainers = {
        enc: ours(store, tmp / f"q-{enc}-{d_sae}", d_sae, k, batch, lr, enc, tokens=steps * batch)
        for enc in ("dense", "sketch")
    }
    sp = None
    if peers:
        sp, sp_step = sparsify_step(d_in, d_sae, k, lr, lr_scale=lambda s: min(1.0, (s + 1) / max(1, steps // 20)))
        with torch.no_grad():  # same start: data-mean b_dec, as our initialisation does (in raw scale)
            sp.b_dec.copy_(data[:-8192].mean(0).to(DEVICE))
    stream = ActivationStore(store).batches(batch, seed=0)
    recalls = []
    for _ in range(steps):
        x = next(stream).to(DEVICE)
        trainers["dense"][1](x)
        recalls.append(trainers["sketch"][1](x).get("sketch_recall", float("nan")))
        if sp is not None:
            sp_step(x)

    def fvu(recon: torch.Tensor) -> float:
        return float((recon - held_out).pow(2).sum() / (held_out - held_out.mean(0)).pow(2).sum())

    out = {}
    with torch.no_grad():
        for enc, (trainer, _) in trainers.items():
            out[f"fvu_{enc}"] = fvu(trainer.model(held_out).reconstruction)
            out[f"never_fired_{enc}"] = float((trainer.silent_tokens >= trainer.step * batch).float().mean())
        if sp is not None:
            out["fvu_sparsify"] = fvu(sp(held_out).sae_out)
    measured = [r for r in recalls if r == r]  # each on the sketch's stalest step, every 8 steps
    out["recall"] = statistics.median(measured) if measured else float("nan")
    return out


def mean_quality(runs: list[dict]) -> dict:
    """The mean of each figure over the draws (the recall's median of medians), and each draw's FVUs."""
    out = {name: float(np.mean([r[name] for r in runs])) for name in runs[0] if name != "recall"}
    out["recall"] = statistics.median(r["recall"] for r in runs)
    out["by_draw"] = "; ".join(f"{r['fvu_dense']:.4f} / {r['fvu_sketch']:.4f} / {r['fvu_sparsify']:.4f}" for r in runs)
    return out


def wide_speeds(d_in: int, latents: int, k: int, batch: int, steps: int, lr: float, tmp: Path) -> dict[str, float]:
    """Seconds per step of the dense and sketch encoders and of sparsify at ``latents``."""
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(batch, d_in, generator=g).to(DEVICE) for _ in range(steps + 1)]
    store = store_from(tmp / "wide", torch.cat(batches[:2]).cpu(), shard_rows=batch)
    out = {}
    for enc in ("dense", "sketch"):
        trainer, step = ours(store, tmp / f"wide-{enc}", latents, k, batch, lr, enc)
        out[enc] = time_steps(step, batches)
        del trainer, step
    try:
        out["sparsify"] = time_steps(sparsify_step(d_in, latents, k, lr)[1], batches)
    except Exception as e:
        print(f"  (sparsify skipped at {latents:,} latents: {type(e).__name__}: {e})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--latents", type=int, default=16384)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=6, help="timed steps per trainer (after one warm-up)")
    p.add_argument("--quality-tokens", type=int, default=2_000_000, help="tokens for the FVU comparison (0: skip)")
    p.add_argument("--quality-draws", type=int, default=3, help="draws of the demo activations it averages over")
    p.add_argument("--wide", type=int, default=131_072, help="latents of the wide run (0: skip it)")
    p.add_argument("--wide-steps", type=int, default=3, help="timed steps per trainer in the wide run")
    p.add_argument(
        "--wide-quality-tokens", type=int, default=500_000, help="tokens for the wide FVU comparison (0: skip)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--device", default="cpu", help="cpu or cuda (then sparsify runs its Triton kernels)")
    a = p.parse_args()
    from sae.memory import keep_freed_memory

    keep_freed_memory()  # as every sae-studio command does first; the peers share the process
    global DEVICE
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda asked for, but this machine has no CUDA device torch can use.")
    if DEVICE.type != "cuda":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # sparsify's import fails without a GPU otherwise
    if a.quick:
        a.d_in, a.latents, a.batch, a.steps, a.quality_tokens, a.quality_draws = 128, 2048, 256, 3, 100_000, 2
        a.wide, a.wide_steps, a.wide_quality_tokens = 8192, 2, 50_000
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
        trainer, step = ours(store, tmp / "ours-sketch", a.latents, a.k, a.batch, lr, "sketch")
        sk = trainer.sketch
        results[f"sae-studio TopK, sketch (rank {sk.rank}, pool {sk.pool})"] = time_steps(step, batches)
        del trainer, step, sk
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

        print(f"\n{'trainer':<46}{'tokens/s':>12}{'s/step':>10}")
        for name, sec in results.items():
            print(f"{name:<46}{a.batch / sec:>12,.0f}{sec:>10.3f}")
        for dt, sec in gemm.items():
            print(f"{'limit: one encoder GEMM in ' + dt:<46}{a.batch / sec:>12,.0f}{sec:>10.3f}")
        print("\nsae-studio's step by stage: " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in stages.items()))

        data = demo_activations(3000) if a.quality_tokens or a.wide else None
        fvu_line = ""
        if a.quality_tokens:
            d_sae, k = 16 * data.shape[1], 16
            draws = [data] + [demo_activations(3000, seed=7 + i) for i in range(1, a.quality_draws)]
            runs = [quality(d, a.quality_tokens, d_sae, k, min(a.batch, 1024), tmp, peers=True) for d in draws]
            q = mean_quality(runs)
            fvu_line = (
                f" fvu_ours={q['fvu_dense']:.4f} fvu_sparsify={q['fvu_sparsify']:.4f} "
                f"fvu_rel_diff={(q['fvu_dense'] - q['fvu_sparsify']) / q['fvu_sparsify']:+.3f}"
            )
            print(
                f"\nquality after {a.quality_tokens:,} tokens of the demo CLIP's activations ({d_sae:,} latents, "
                f"k={k}; by draw, FVU dense / sketch / sparsify: {q['by_draw']}), means over {len(draws)} draws: "
                f"held-out FVU dense {q['fvu_dense']:.4f}, sketch {q['fvu_sketch']:.4f}, sparsify "
                f"{q['fvu_sparsify']:.4f}; the sketch's recall of the exact top k {q['recall']:.4f}; latents that "
                f"never fired: dense {q['never_fired_dense']:.4f}, sketch {q['never_fired_sketch']:.4f}"
            )

        wide_line = ""
        if a.wide:
            w = wide_speeds(a.d_in, a.wide, a.k, a.batch, a.wide_steps, lr, tmp)
            print(f"\nwide: {a.wide:,} latents, d_in={a.d_in}, k={a.k}, median of {a.wide_steps} steps")
            for name, sec in w.items():
                print(f"  {name:<20}{a.batch / sec:>12,.0f} tokens/s{sec:>10.3f} s/step")
            wide_ratio = f"{w['sparsify'] / w['sketch']:.2f}" if "sparsify" in w else "nan"
            wide_line = f"wide: ratio_vs_sparsify={wide_ratio} recall=nan fvu_rel_diff=nan"
            if a.wide_quality_tokens:  # at the trainer's own learning rate for this width (1e-3 is 14 times larger)
                wide_lr = TrainConfig(acts="", out="").learning_rate(a.wide)
                wq = quality(data, a.wide_quality_tokens, a.wide, 16, min(a.batch, 1024), tmp, peers=False, lr=wide_lr)
                print(
                    f"  quality after {a.wide_quality_tokens:,} tokens of the demo CLIP's activations ({a.wide:,} "
                    f"latents, k=16, lr {wide_lr:.1e}): held-out FVU dense {wq['fvu_dense']:.4f}, "
                    f"sketch {wq['fvu_sketch']:.4f}; "
                    f"recall {wq['recall']:.4f}; never fired: dense {wq['never_fired_dense']:.4f}, sketch "
                    f"{wq['never_fired_sketch']:.4f}"
                )
                wide_line = (
                    f"wide: ratio_vs_sparsify={wide_ratio} recall={wq['recall']:.4f} "
                    f"fvu_rel_diff={(wq['fvu_sketch'] - wq['fvu_dense']) / wq['fvu_dense']:+.3f}"
                )

    ours_s = next(v for k, v in results.items() if k.startswith("sae-studio TopK ("))
    sketch_s = next(v for k, v in results.items() if k.startswith("sae-studio TopK, sketch"))
    sp_s = results.get("sparsify SparseCoder")
    best_gemm = min(gemm.values())
    print(
        f"\nlimit_fraction (the dense step) uses the fastest GEMM here; against bf16 alone it is "
        f"{gemm['bfloat16'] / ours_s:.2f}.{fvu_line}"
    )
    sketch_quality = (
        f"recall={q['recall']:.4f} fvu_rel_diff={(q['fvu_sketch'] - q['fvu_dense']) / q['fvu_dense']:+.3f}"
        if a.quality_tokens
        else "recall=nan fvu_rel_diff=nan"
    )
    print(f"sketch: ratio_vs_sparsify={sp_s / sketch_s if sp_s else float('nan'):.2f} {sketch_quality}")
    print(f"ratio_vs_sparsify={sp_s / ours_s if sp_s else float('nan'):.2f} limit_fraction={best_gemm / ours_s:.2f}")
    if wide_line:
        print(wide_line)


if __name__ == "__main__":
    main()
