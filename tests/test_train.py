"""The trainer: it learns, it stores its metrics, and a kill -9 at any moment resumes bit for bit."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, synthetic_store
from safetensors.torch import load_file

from sae.activations import extract
from sae.backbone import load_backbone
from sae.errors import UserError
from sae.model import SparseAutoencoder
from sae.train import TrainConfig, Trainer

CLI = [sys.executable, "-m", "sae"]


@pytest.fixture
def store(tmp_path) -> Path:
    return synthetic_store(tmp_path / "acts")


def test_topk_training_recovers_sparse_structure(store, tmp_path):
    cfg = TrainConfig(
        acts=str(store), out=str(tmp_path / "sae"), expansion=4, k=4, tokens=300_000, batch_size=256, lr=2e-3
    )
    model = Trainer(cfg, progress=False).run()
    m = model.metadata.metrics
    assert m["fvu"] < 0.15 and m["l0"] <= 4 and m["dead_fraction"] < 0.5
    saved = SparseAutoencoder.load(tmp_path / "sae")
    assert saved.metadata.metrics["fvu"] == pytest.approx(m["fvu"])
    assert not (tmp_path / "sae" / "trainer_state.safetensors").exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_grouped_top_k_chooses_the_scores_torch_topk_does(dtype):
    """kernels.top on wide rows (grouped) and narrow ones (torch's own), with ties, masked
    latents and a row whose best scores all fall in one group."""
    from sae.kernels import top

    g = torch.Generator().manual_seed(0)
    for B, N, n in [(64, 16384, 16), (32, 131072, 32), (16, 4096, 256), (8, 1000, 8), (8, 64, 4)]:
        scores = torch.randn(B, N, generator=g).mul(4).round().to(dtype)  # coarse: many ties
        scores[0, ::2] = float("-inf")  # AuxK masks the live latents
        scores[1, : N // 2] = float("-inf")  # a whole half masked
        for row, parts in enumerate((4, 8, 16, 32, 64), start=2):  # the best all in one group of this many
            scores[row, torch.arange(0, N, N // parts)[:n]] = 1e4
        values, indices = top(scores, n)
        expected = scores.topk(n, dim=-1).values
        assert torch.equal(values.sort(dim=1, descending=True).values, expected)
        assert torch.equal(scores.gather(1, indices), values)  # the indices hold those scores
        assert all(len(set(row.tolist())) == n for row in indices)  # each latent once


def test_the_hand_written_step_has_autogradients_own_gradients(store, tmp_path):
    """The trainer's backward by hand (sae.kernels) against autograd through the dense step: top k,
    AuxK over dead latents straight through its ReLU and only raising their pre-activations, and
    the decoder gradient projected off each row."""
    cfg = TrainConfig(acts=str(store), out=str(tmp_path / "sae"), expansion=4, k=4, batch_size=256, matmul="fp32")
    trainer = Trainer(cfg, progress=False)
    m = trainer.model
    trainer.silent_tokens[::3] = trainer.aux_dead_tokens  # a third of the latents are dead
    x = trainer.store.sample(256, seed=3)
    trainer._step_topk(x)
    p = {n: getattr(m, n).detach().clone().requires_grad_() for n in ("W_enc_T", "b_enc", "W_dec", "b_dec")}

    def dense(values, indices):
        return torch.zeros(x.shape[0], m.d_sae).scatter(1, indices, values) @ p["W_dec"]

    xn = x * m.input_scale
    pre = (xn - p["b_dec"]) @ p["W_enc_T"].T + p["b_enc"]
    values, indices = pre.topk(cfg.k)
    recon = dense(values.relu(), indices) + p["b_dec"]
    loss = (recon - xn).pow(2).sum() / (xn - xn.mean(0)).pow(2).sum()
    dead = trainer.silent_tokens >= trainer.aux_dead_tokens
    k_aux = min(m.cfg.d_in // 2, int(dead.sum()))
    aux_pre, aux_indices = pre.masked_fill(~dead, float("-inf")).topk(k_aux)
    e = (xn - recon).detach()
    aux_pre.register_hook(lambda g: g.clamp(max=0.0))  # AuxK may only raise a dead latent
    e_hat = dense(aux_pre + (aux_pre.relu() - aux_pre).detach(), aux_indices)
    weight = cfg.auxk_alpha * min(1.0, k_aux / (m.cfg.d_in // 2))
    (loss + weight * (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()).backward()
    W = p["W_dec"].detach()
    expected = dict((n, t.grad) for n, t in p.items())
    expected["W_dec"] = expected["W_dec"] - (expected["W_dec"] * W).sum(1, keepdim=True) * W
    assert k_aux > 0 and (expected["W_enc_T"][dead].abs().sum(1) > 0).any()  # AuxK reached dead latents
    for name, grad in expected.items():
        ours = getattr(m, name).grad
        torch.testing.assert_close(ours, grad, rtol=1e-4, atol=1e-6, msg=lambda s, name=name: f"{name}: {s}")


def test_auxk_revives_latents_that_are_negative_on_every_token(store, tmp_path):
    """A latent whose pre-activation is below zero on every token never wins the top k; AuxK's
    gradient goes straight through its ReLU, so it learns to fire again."""
    cfg = TrainConfig(
        acts=str(store), out=str(tmp_path / "sae"), expansion=4, k=4, tokens=150_000, batch_size=256, lr=2e-3
    )
    trainer = Trainer(cfg, progress=False)
    killed = torch.arange(0, trainer.model.d_sae, 4)  # a quarter of the latents
    with torch.no_grad():
        trainer.model.W_enc_T[killed] = 0.0
        trainer.model.b_enc[killed] = -0.5
        x = trainer.store.sample(4096, seed=1)
        assert (trainer.model.pre_activations(x)[:, killed] < 0).all()
    model = trainer.run()
    with torch.no_grad():
        fired = model.encode(trainer.store.sample(8192, seed=2)).gt(0).any(0)
    assert fired[killed].float().mean() > 0.9


def test_auxk_keeps_a_wide_saes_latents_alive(store, tmp_path):
    """At 32x, most latents have not fired yet when AuxK starts (a tenth into the run). AuxK keeps
    them alive at no cost in FVU. Its full gradient used to push them further from firing: half
    were dead at the end, against a sixth without AuxK."""
    runs = {}
    for alpha in (1 / 32, 0.0):
        cfg = TrainConfig(
            acts=str(store),
            out=str(tmp_path / f"sae-{alpha}"),
            expansion=32,
            k=4,
            tokens=150_000,
            batch_size=256,
            auxk_alpha=alpha,
        )
        trainer = Trainer(cfg, progress=False)
        fvu = trainer.run().metadata.metrics["fvu"]
        runs[alpha] = (fvu, float((trainer.silent_tokens >= trainer.aux_dead_tokens).float().mean()))
    (fvu, dead), (fvu_off, dead_off) = runs[1 / 32], runs[0.0]
    assert dead <= 0.03 and dead_off >= 0.1 and fvu <= 1.05 * fvu_off, runs


def test_prune_below_drops_the_latents_that_hardly_fire(store, tmp_path):
    from sae.activations import ActivationStore
    from sae.evaluate import firing_rates

    cfg = TrainConfig(
        acts=str(store),
        out=str(tmp_path / "sae"),
        expansion=8,
        k=4,
        tokens=150_000,
        batch_size=256,
        lr=2e-3,
        prune_below=3e-3,
    )
    full = Trainer(dataclasses.replace(cfg, out=str(tmp_path / "full"), prune_below=0.0), progress=False).run()
    before = firing_rates(full, ActivationStore(store))
    Trainer(cfg, progress=False).run()
    saved = SparseAutoencoder.load(tmp_path / "sae")
    m = saved.metadata.metrics
    assert m["trained_width"] == 256 and saved.d_sae == 256 - m["pruned"] == int((before >= 3e-3).sum())
    assert 0 < m["pruned"] < 256
    assert (firing_rates(saved, ActivationStore(store)) >= 3e-3).all()  # the kept ones only gain (fewer rivals)
    x = ActivationStore(store).sample(2048, seed=3)
    with torch.no_grad():
        fvu = lambda sae: float((sae(x).reconstruction - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())  # noqa: E731
        assert fvu(saved) < fvu(full) + 0.02  # what hardly fired carried hardly anything
    with pytest.raises(UserError, match="fewer than k"):
        Trainer(dataclasses.replace(cfg, out=str(tmp_path / "none"), prune_below=0.9), progress=False).run()


def test_relu_training_learns(store, tmp_path):
    cfg = TrainConfig(
        acts=str(store),
        out=str(tmp_path / "sae"),
        arch="relu",
        expansion=4,
        l1=0.5,
        tokens=200_000,
        batch_size=256,
        lr=2e-3,
    )
    model = Trainer(cfg, progress=False).run()
    assert model.metadata.metrics["fvu"] < 0.5
    assert model.metadata.metrics["l0"] < 64


def _train_args(store: Path, out: Path) -> list[str]:
    return [
        *CLI,
        "train",
        "--acts",
        str(store),
        "--out",
        str(out),
        "--expansion",
        "4",
        "--k",
        "4",
        "--tokens",
        "100000",
        "--batch-size",
        "128",
        "--checkpoint-every",
        "7",
        "--seed",
        "5",
        "--eval-images",
        "0",
    ]


@pytest.mark.slow
def test_kill_9_then_resume_ends_bit_identical(store, tmp_path):
    ref = subprocess.run(_train_args(store, tmp_path / "ref"), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    args = _train_args(store, out)
    state = out / "trainer_state.json"

    def step() -> int:
        try:
            return json.loads(state.read_text())["step"]
        except (OSError, ValueError):
            return 0

    rng = np.random.default_rng(0)
    kills = 0
    for target in (100, 300, 600):
        proc = subprocess.Popen(
            args + (["--resume"] if kills else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while proc.poll() is None and step() < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere, also inside a checkpoint write
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    r = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a = load_file(str(tmp_path / "ref" / "sae_weights.safetensors"))
    b = load_file(str(out / "sae_weights.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_existing_run_needs_resume_and_same_settings(store, tmp_path):
    cfg = TrainConfig(
        acts=str(store), out=str(tmp_path / "sae"), expansion=2, k=4, tokens=20_000, batch_size=128, checkpoint_every=10
    )
    trainer = Trainer(cfg, progress=False, should_stop=lambda: True)
    trainer.run()  # stops (and checkpoints) after one step, like a GUI cancel
    with pytest.raises(UserError, match="pass --resume"):
        Trainer(cfg, progress=False)
    cfg.resume, cfg.k = True, 8
    with pytest.raises(UserError, match="k=4, not 8"):
        Trainer(cfg, progress=False)
    cfg.k = 4
    resumed = Trainer(cfg, progress=False)
    assert resumed.step == 1


def test_damaged_training_state_is_one_sentence(store, tmp_path):
    out = tmp_path / "sae"
    cfg = TrainConfig(acts=str(store), out=str(out), expansion=2, k=4, tokens=20_000, batch_size=128)
    Trainer(cfg, progress=False, should_stop=lambda: True).run()
    (out / "trainer_state.safetensors").write_bytes(b"half a file")
    r = run_cli(
        "train",
        "--acts",
        store,
        "--out",
        out,
        "--expansion",
        "2",
        "--k",
        "4",
        "--tokens",
        "20000",
        "--batch-size",
        "128",
        "--resume",
    )
    assert r.returncode == 2
    assert "is damaged" in r.stderr and "Traceback" not in r.stderr


def test_not_an_activations_folder_is_one_sentence(tmp_path):
    (tmp_path / "nothing").mkdir()
    r = run_cli("train", "--acts", tmp_path / "nothing", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and "not an activations folder" in r.stderr


def test_cli_end_to_end_on_a_tiny_vit_reports_splice_cosine(tiny_clip, image_dir, tmp_path):
    bb = load_backbone(str(tiny_clip))
    extract(bb, image_dir, tmp_path / "acts", progress=False)
    r = run_cli(
        "train",
        "--acts",
        tmp_path / "acts",
        "--out",
        tmp_path / "sae",
        "--expansion",
        "4",
        "--k",
        "8",
        "--tokens",
        "30000",
        "--batch-size",
        "64",
    )
    assert r.returncode == 0, r.stderr
    sae = SparseAutoencoder.load(tmp_path / "sae")
    assert sae.metadata.backbone == bb.model_id and sae.metadata.layer == bb.layer
    assert sae.metadata.backbone_fingerprint == bb.fingerprint
    assert 0.5 < sae.metadata.metrics["splice_cosine"] <= 1.0
    assert "splice_cosine" in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_training_bench_refuses_a_cuda_run_without_cuda_in_one_sentence(monkeypatch):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--device", "cuda"])
    with pytest.raises(SystemExit, match=r"^error: --device cuda asked for, but this machine has no CUDA device"):
        bench.main()
