"""The SAE trainer: TopK with AuxK (OpenAI's k-sparse recipe) or ReLU + L1, resumable bit for bit.

The output folder is a loadable SAE after the first checkpoint; while training it also holds
``trainer_state.safetensors`` (weights in training form, Adam moments, dead-latent counters)
and ``trainer_state.json`` (config and step). Both are written in one atomic swap, and the
data stream is a pure function of (seed, step), so ``--resume`` after a ``kill -9`` at any
moment ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from sae import atomic, distributed, kernels, sketch
from sae.activations import ActivationStore
from sae.configs import TrainConfig
from sae.device import pick_device
from sae.errors import UserError
from sae.model import SparseAutoencoder
from sae.sae_config import TRAINABLE, SaeConfig, SaeMetadata

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
RECALL_TOKENS = 128  # tokens of a batch on which the sketch's recall is measured
FINAL_METRICS = ("fvu", "l0", "dead_fraction", "aux_loss", "sketch_recall", "sketch_period")  # kept in the metadata
# Settings that may not change between a run and its resumption.
_FIXED_ON_RESUME = (
    *("arch", "expansion", "width", "k", "l1", "batch_size", "lr", "seed", "auxk_alpha", "matmul"),
    *("encoder", "sketch_rank", "sketch_pool"),
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # what a run saved before a key existed used


def _global_var(x: torch.Tensor) -> torch.Tensor:
    """sum ||x - mean||^2 over the global batch (all ranks), as a constant."""
    with torch.no_grad():
        x = x.detach()
        stats = distributed.total(torch.cat([x.sum(0), x.new_tensor([x.shape[0]])]))
        mean = stats[:-1] / stats[-1]
        return distributed.total((x - mean).pow(2).sum())


def _sum_grads(model: torch.nn.Module) -> None:
    """Each rank's loss is its share of the global loss: the global gradient is their sum."""
    if distributed.active():
        for p in model.parameters():
            if p.grad is not None:
                distributed.total(p.grad)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AVX512-BF16 or AMX); on AVX2 bf16 GEMMs
    are emulated and several times slower than fp32."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_dtype(choice: str, device: torch.device) -> torch.dtype:
    if choice == "fp32":
        return torch.float32
    if choice == "bf16":
        return torch.bfloat16
    if choice != "auto":
        raise UserError(f"--matmul '{choice}' is unknown; use auto, fp32 or bf16.")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


class Trainer:
    """One training run. ``run()`` trains to ``cfg.tokens`` and saves the SAE folder."""

    def __init__(
        self,
        cfg: TrainConfig,
        metadata: SaeMetadata | None = None,
        on_step: Callable[[int, int, dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        progress: bool = True,
        log_every: int = 50,
    ):
        if cfg.arch not in TRAINABLE:
            raise UserError(f"--arch '{cfg.arch}' is unknown; use topk or relu.")
        if cfg.batch_size <= 0 or cfg.tokens <= 0:
            raise UserError("--batch-size and --tokens must be positive.")
        self.cfg = cfg
        self.store = ActivationStore(cfg.acts)
        self.device = pick_device(cfg.device)
        self.mm_dtype = matmul_dtype(cfg.matmul, self.device)
        self.on_step, self.should_stop, self.progress, self.log_every = on_step, should_stop, progress, log_every
        self.out = Path(cfg.out)
        m = self.store.manifest
        self.metadata = metadata or SaeMetadata(
            backbone=m.model, backbone_fingerprint=m.fingerprint, layer=m.layer, token_set=m.token_set
        )
        d_in = self.store.d
        self.sae_cfg = SaeConfig(d_in=d_in, d_sae=cfg.d_sae_for(d_in), arch=cfg.arch, k=cfg.k)
        self.model = SparseAutoencoder(self.sae_cfg, self.metadata).to(self.device)
        self.total_steps = math.ceil(cfg.tokens / cfg.batch_size)
        self.step = 0
        # Tokens since each latent last fired; a latent at or past the threshold is dead.
        self.silent_tokens = torch.zeros(self.sae_cfg.d_sae, dtype=torch.int64, device=self.device)
        self.aux_dead_tokens = min(cfg.dead_tokens, max(self.total_steps // 10, 10) * cfg.batch_size)
        self.history: list[dict] = []
        self.scratch = kernels.Scratch()  # the GEMM's output and the weights' gradients, kept between steps
        self.sketch = self._make_sketch()
        self.sketch_recall: float | None = None  # the latest measurement, on the sketch's stalest step
        self._start()

    # -- set-up ------------------------------------------------------------------------------
    def _make_sketch(self) -> sketch.Sketch | None:
        cfg, d_in, d_sae = self.cfg, self.sae_cfg.d_in, self.sae_cfg.d_sae
        if cfg.encoder == "dense":
            return None
        if cfg.encoder != "sketch":
            raise UserError(f"--encoder '{cfg.encoder}' is unknown; use dense or sketch.")
        rank, pool = cfg.sketch_rank or d_in // 2, cfg.sketch_pool or min(sketch.POOL_PER_K * cfg.k, d_sae)
        sketch.check(cfg.arch, cfg.k, d_in, d_sae, rank, pool)
        return sketch.Sketch(d_in, d_sae, rank, pool, self.mm_dtype, self.device)

    def _make_optimizer(self) -> torch.optim.Adam:
        params = [self.model.W_enc_T, self.model.b_enc, self.model.W_dec, self.model.b_dec]
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(
            params, lr=self.cfg.learning_rate(self.sae_cfg.d_sae), betas=(0.9, 0.999), eps=6.25e-10, fused=fused
        )

    def _start(self) -> None:
        atomic.recover_dir(self.out)
        has_state = (self.out / STATE_JSON).is_file()
        if self.cfg.resume and has_state:
            self.optimizer = self._make_optimizer()
            self._load_state()
            return
        if self.cfg.resume and not has_state:
            if (self.out / "cfg.json").is_file():
                raise UserError(
                    f"{self.out} holds a finished SAE with no training state to resume; train into a new --out."
                )
            # Nothing saved yet (killed before the first checkpoint): start from scratch.
        elif has_state or (self.out / "cfg.json").is_file():
            raise UserError(
                f"{self.out} already holds an SAE or a run; pass --resume to continue it or choose a new --out."
            )
        gen = torch.Generator().manual_seed(self.cfg.seed)
        sample = self.store.sample(min(self.store.rows, 65_536), seed=self.cfg.seed)
        self.model.initialize(sample, generator=gen)
        self.model.to(self.device)
        distributed.broadcast_(self.model.parameters())  # every rank starts from rank 0's weights
        self.optimizer = self._make_optimizer()

    # -- state on disk -------------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        t = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        t["model.input_scale"] = self.model.input_scale.detach().cpu().reshape(1)
        t["silent_tokens"] = self.silent_tokens.cpu()
        if self.sketch is not None:
            t.update(self.sketch.state())
        names = ["W_enc_T", "b_enc", "W_dec", "b_dec"]
        for name, p in zip(names, self.optimizer.param_groups[0]["params"], strict=True):
            for key, v in self.optimizer.state.get(p, {}).items():
                t[f"opt.{name}.{key}"] = v.detach().cpu().reshape(-1) if v.dim() == 0 else v.detach().cpu().contiguous()
        return t

    def _write_state(self, folder: Path) -> None:
        save_file(self._state_tensors(), str(folder / STATE_TENSORS))
        state = {"step": self.step, "config": asdict(self.cfg), "history": self.history[-200:]}
        (folder / STATE_JSON).write_text(json.dumps(state, indent=2))

    def checkpoint(self) -> None:
        if distributed.is_main():
            self.model.metadata.metrics = dict(self.history[-1]) if self.history else {}
            self.model.save(self.out, extra=self._write_state)
        distributed.barrier()

    def _load_state(self) -> None:
        try:
            state = json.loads((self.out / STATE_JSON).read_text())
            with safe_open(str(self.out / STATE_TENSORS), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise UserError(
                f"The training state in {self.out} is damaged ({e}); delete {STATE_JSON} and "
                f"{STATE_TENSORS} there to start over."
            ) from e
        saved = state.get("config", {})
        for key in _FIXED_ON_RESUME:
            was = saved.get(key, _DEFAULTS[key])
            if was != getattr(self.cfg, key):
                raise UserError(
                    f"{self.out} was trained with {key}={was!r}, not {getattr(self.cfg, key)!r}; "
                    "resume with the same settings (only --tokens may grow)."
                )
        if saved.get("acts") and Path(saved["acts"]).resolve() != Path(self.cfg.acts).resolve():
            raise UserError(
                f"{self.out} was trained on {saved['acts']}, not {self.cfg.acts}; resume on the same activations."
            )
        model_state = {
            k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.") and k != "model.input_scale"
        }
        self.model.load_state_dict(model_state)
        self.model.input_scale.fill_(tensors["model.input_scale"].item())
        self.model.to(self.device)
        self.silent_tokens = tensors["silent_tokens"].to(self.device)
        if self.sketch is not None:
            if "sketch.pool" not in tensors and not self.cfg.sketch_pool:
                self.sketch.pool = 2 * self.cfg.k  # the default when runs saved no pool
            self.sketch.load(tensors)
        self.optimizer = self._make_optimizer()
        names = ["W_enc_T", "b_enc", "W_dec", "b_dec"]
        opt_state = self.optimizer.state_dict()
        for i, name in enumerate(names):
            entry = {}
            for key in ("step", "exp_avg", "exp_avg_sq"):
                v = tensors.get(f"opt.{name}.{key}")
                if v is not None:
                    entry[key] = v.reshape(()) if key == "step" else v
            opt_state["state"][i] = entry
        self.optimizer.load_state_dict(opt_state)
        self.step = int(state["step"])
        self.history = state.get("history", [])

    # -- steps -------------------------------------------------------------------------------
    def _lr_scale(self) -> float:
        warmup = min(1000, max(1, self.total_steps // 20))
        return min(1.0, (self.step + 1) / warmup)

    def _step_topk(self, x: torch.Tensor) -> dict:
        """Forward and backward by hand (sae.kernels): the gradients land in each parameter's
        ``.grad``, the decoder's already projected onto its rows' tangent spaces."""
        m, cfg = self.model, self.cfg
        with torch.no_grad():
            xn = x * m.input_scale
            xc = xn - m.b_dec
            dead = self.silent_tokens >= self.aux_dead_tokens
            n_dead = int(dead.sum())
            k_aux = min(self.sae_cfg.d_in // 2, n_dead)
            dead_or_none = dead if k_aux else None
            if self.sketch is None:
                codes = kernels.topk_codes(
                    xc, m.W_enc_T, m.b_enc, cfg.k, self.mm_dtype, dead_or_none, k_aux, self.scratch
                )
            else:
                self.sketch.refresh(self.step, xc, m.W_enc_T)
                codes = self.sketch.topk_codes(xc, m.W_enc_T, m.b_enc, cfg.k, dead_or_none, k_aux, self.scratch)
            recon = kernels.decode_rows(codes.indices, codes.values, m.W_dec) + m.b_dec
            total_var = _global_var(xn)
            err = recon - xn
            sse = err.pow(2).sum()
            aux, g_aux = torch.zeros(()), None
            if k_aux:
                e_hat = kernels.decode_rows(codes.aux_indices, codes.aux_values, m.W_dec)
                miss = e_hat + err  # e_hat - e, where e = xn - recon is the residual AuxK predicts
                var_e = _global_var(err).clamp_min(1e-12)  # the variance of -e is e's
                aux = miss.pow(2).sum() / var_e
                # Fewer dead latents than d_in/2 get a proportionally smaller loss (as sparsify does).
                weight = cfg.auxk_alpha * min(1.0, n_dead / (self.sae_cfg.d_in // 2))
                g_aux = miss.mul_(2 * weight / var_e)
            # loss = sse / total_var + weight * aux
            grads = kernels.topk_backward(xc, codes, err.mul_(2 / total_var), g_aux, m.W_enc_T, m.W_dec, self.scratch)
            for name, grad in vars(grads).items():
                getattr(m, name).grad = grad
        _sum_grads(m)
        with torch.no_grad():
            fired = torch.zeros_like(self.silent_tokens, dtype=torch.bool)
            fired[codes.indices[codes.values > 0]] = True
            counts = distributed.total(torch.stack([sse, (codes.values > 0).sum().to(sse.dtype), aux.to(sse.dtype)]))
            rows = x.shape[0] * distributed.world()
        out = {
            "fvu": float(counts[0] / total_var),
            "l0": float(counts[1]) / rows,
            "aux_loss": float(counts[2]),
            "fired": distributed.any_rank(fired),
        }
        if self.sketch is not None and self.step % sketch.REFRESH == sketch.REFRESH - 1:
            # on the sketch's stalest step, against the dense GEMM on the global batch's first tokens
            # (the same tokens on any number of ranks, so the period follows the same recall)
            mine = xc[: distributed.rows_among_first(RECALL_TOKENS)]
            self.sketch_recall = self.sketch.recall(mine, m.W_enc_T, m.b_enc, cfg.k)
            self.sketch.adapt(self.sketch_recall)
        if self.sketch_recall is not None:
            out["sketch_recall"] = self.sketch_recall
            out["sketch_period"] = self.sketch.period
        return out

    def _step_relu(self, x: torch.Tensor) -> dict:
        m = self.model
        xn = x * m.input_scale
        pre = torch.addmm(m.b_enc, (xn - m.b_dec), m.W_enc_T.T)
        f = pre.relu()
        recon = f @ m.W_dec + m.b_dec
        total_var = _global_var(xn)
        sse = (recon - xn).pow(2).sum()
        rows = x.shape[0] * distributed.world()
        l1_warmup = min(1.0, (self.step + 1) / max(1, self.total_steps // 20))
        sparsity = (f * m.W_dec.norm(dim=-1)).sum() / rows / self.sae_cfg.d_in
        loss = sse / total_var + self.cfg.l1 * l1_warmup * sparsity
        loss.backward()
        _sum_grads(m)
        with torch.no_grad():
            active = f > 0
            counts = distributed.total(torch.stack([sse.detach(), active.sum().to(sse.dtype)]))
            return {
                "fvu": float(counts[0] / total_var),
                "l0": float(counts[1]) / rows,
                "aux_loss": 0.0,
                "fired": distributed.any_rank(active.any(0)),
            }

    def train_step(self, x: torch.Tensor) -> dict:
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.learning_rate(self.sae_cfg.d_sae) * self._lr_scale()
        if self.cfg.arch != "topk":  # the TopK step writes every gradient whole
            self.optimizer.zero_grad(set_to_none=True)
        out = self._step_topk(x) if self.cfg.arch == "topk" else self._step_relu(x)
        self.optimizer.step()
        if self.cfg.arch == "topk":
            kernels.normalize_rows_(self.model.W_dec.data)
        fired = out.pop("fired")
        self.silent_tokens += x.shape[0] * distributed.world()
        self.silent_tokens[fired] = 0
        seen = (self.step + 1) * self.cfg.batch_size
        window = min(self.cfg.dead_tokens, seen)
        out["dead_fraction"] = float((self.silent_tokens >= window).float().mean())
        self.step += 1
        return out

    def _prune(self) -> dict:
        """Keep the latents that fire on at least ``prune_below`` of the training tokens.

        A TopK SAE trained with AuxK keeps few latents silent for 10M tokens, yet with the final
        weights a tail of them fires on almost nothing (the demo SAE: a fifth of 2,048 never fire
        on 10,000 held-out scenes): they lose every top-k contest and AuxK revives them briefly
        now and then. In a feature browser they are entries with no examples.
        """
        from sae.evaluate import firing_rates

        rates = firing_rates(self.model, self.store)
        keep = (rates >= self.cfg.prune_below).nonzero().flatten()
        if len(keep) < self.cfg.k:
            raise UserError(
                f"--prune-below {self.cfg.prune_below} would keep {len(keep)} latents, fewer than k; lower it."
            )
        trained = self.model.d_sae
        self.model = self.model.keep_latents(keep)
        self.sae_cfg = self.model.cfg
        return {"trained_width": float(trained), "pruned": float(trained - len(keep))}

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> SparseAutoencoder:
        """Train from the current step to the end; returns the model (saved in ``cfg.out``)."""
        stream = self.store.batches(self.cfg.batch_size, seed=self.cfg.seed, start_batch=self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="train", disable=not self.progress)
        started, start_step = time.perf_counter(), self.step
        metrics: dict = {}
        rank, world = distributed.rank(), distributed.world()
        while self.step < self.total_steps:
            x = next(stream)
            if world > 1:
                x = x[rank::world]  # this rank's share of the global batch
            x = x.to(self.device, non_blocking=True)
            metrics = self.train_step(x)
            bar.update(1)
            if self.step % self.log_every == 0 or self.step == self.total_steps:
                elapsed = max(1e-9, time.perf_counter() - started)
                metrics["tokens_per_s"] = (self.step - start_step) * self.cfg.batch_size / elapsed
                metrics["step"] = self.step
                self.history.append(dict(metrics))
                bar.set_postfix(
                    fvu=f"{metrics['fvu']:.3f}", l0=f"{metrics['l0']:.1f}", dead=f"{metrics['dead_fraction']:.3f}"
                )
            if self.on_step:
                self.on_step(self.step, self.total_steps, metrics)
            if self.step % self.cfg.checkpoint_every == 0 and self.step < self.total_steps:
                self.checkpoint()
            if self.should_stop and self.should_stop():
                self.checkpoint()
                bar.close()
                return self.model
        bar.close()
        final = {k: v for k, v in metrics.items() if k in FINAL_METRICS}
        final["tokens"] = self.step * self.cfg.batch_size
        if self.cfg.prune_below > 0:
            final.update(self._prune())
        self.model.metadata.metrics = final
        self.model.metadata.train_config = {k: v for k, v in asdict(self.cfg).items() if k not in ("resume",)}
        if distributed.is_main():
            self.model.save(self.out)  # the finished folder drops the optimizer state
        distributed.barrier()
        return self.model
