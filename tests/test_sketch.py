"""The sketch encoder (``--encoder sketch``): a low-rank sketch proposes each token's candidates,
their values are exact, and a run with it learns as the dense one does, resumes bit for bit and
measures its own recall."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers import synthetic_store
from safetensors.torch import load_file, save_file

from sae import kernels, sketch
from sae.errors import UserError
from sae.train import STATE_TENSORS, TrainConfig, Trainer


def _config(store, out, **kw) -> TrainConfig:
    base = dict(acts=str(store), out=str(out), expansion=4, k=4, tokens=120_000, batch_size=256, lr=2e-3)
    return TrainConfig(**{**base, **kw})


def test_a_pool_of_every_latent_chooses_exactly_what_the_dense_gemm_does():
    g = torch.Generator().manual_seed(0)
    xc, W, b = torch.randn(64, 24, generator=g), torch.randn(96, 24, generator=g), torch.randn(96, generator=g)
    dead = torch.zeros(96, dtype=torch.bool)
    dead[::20] = True  # few enough to be scored exactly
    s = sketch.Sketch(24, 96, rank=3, pool=96, dtype=torch.float32, device=torch.device("cpu"))
    s.refresh(0, xc, W)
    got = s.topk_codes(xc, W, b, 6, dead, 3, kernels.Scratch())
    want = kernels.topk_codes(xc, W, b, 6, torch.float32, dead, 3)
    for a, c in ((got.indices, want.indices), (got.aux_indices, want.aux_indices)):
        assert torch.equal(a.sort(1).values, c.sort(1).values)
    for (gi, gv), (wi, wv) in (
        ((got.indices, got.values), (want.indices, want.values)),
        ((got.aux_indices, got.aux_values), (want.aux_indices, want.aux_values)),
    ):
        assert torch.allclose(gv.gather(1, gi.argsort(1)), wv.gather(1, wi.argsort(1)), atol=1e-5)
    assert s.recall(xc, W, b, 6) == 1.0
    # many dead: AuxK takes the sketch's choice among them, still with exact values
    dead[::3] = True
    got = s.topk_codes(xc, W, b, 6, dead, 3, kernels.Scratch())
    assert dead[got.aux_indices].all()
    exact = (xc @ W.T + b).gather(1, got.aux_indices).relu()
    assert torch.allclose(got.aux_values, exact, atol=1e-5)
    # a rank-1 sketch that proposes only k candidates misses much of the exact top k
    s = sketch.Sketch(24, 96, rank=1, pool=6, dtype=torch.float32, device=torch.device("cpu"))
    s.refresh(0, xc, W)
    assert s.recall(xc, W, b, 6) < 0.6


def test_a_dead_latent_the_sketch_misses_still_enters_the_top_k_when_auxk_finds_it():
    """As in the dense step, every latent competes for the top k: the dead ones AuxK scores
    exactly join the choice, so a rank-1 sketch proposing only k candidates loses none of them."""
    g = torch.Generator().manual_seed(1)
    xc, W, b = torch.randn(256, 24, generator=g), torch.randn(96, 24, generator=g), torch.randn(96, generator=g)
    dead = torch.zeros(96, dtype=torch.bool)
    dead[::16] = True  # six: few enough to be scored exactly, all of them by AuxK
    want = kernels.topk_codes(xc, W, b, 6, torch.float32, dead, 6).indices
    s = sketch.Sketch(24, 96, rank=1, pool=6, dtype=torch.float32, device=torch.device("cpu"))
    s.refresh(0, xc, W)
    got = s.topk_codes(xc, W, b, 6, dead, 6, kernels.Scratch()).indices
    wanted = torch.zeros(256, 96, dtype=torch.bool).scatter_(1, want, True) & dead
    chosen = torch.zeros(256, 96, dtype=torch.bool).scatter_(1, got, True) & dead
    assert wanted.sum() > 20 and not (wanted & ~chosen).any()  # (it may choose more where it misses live ones)
    assert all(len(set(row)) == 6 for row in got.tolist())  # no latent chosen twice


# The sketch runs in the encoder GEMM's precision: bf16 where the CPU multiplies it natively, else
# fp32. Both are tested on every machine (fp32 once spoilt the sketch on AVX2 CPUs alone).
PRECISIONS = pytest.mark.parametrize("matmul", ["fp32", "bf16"])


@PRECISIONS
def test_on_inputs_with_main_directions_the_sketch_finds_the_top_k_and_learns_as_dense_does(tmp_path, matmul):
    store = synthetic_store(tmp_path / "acts", d=32, within=12)
    dense = Trainer(_config(store, tmp_path / "dense", matmul=matmul), progress=False).run().metadata.metrics
    sketched = Trainer(
        _config(store, tmp_path / "sketch", encoder="sketch", sketch_rank=16, matmul=matmul), progress=False
    )
    m = sketched.run().metadata.metrics
    assert m["sketch_recall"] >= 0.99
    assert m["fvu"] <= dense["fvu"] * 1.05 and m["dead_fraction"] <= dense["dead_fraction"] + 0.02
    assert sketched.sketch.rank == 16 and sketched.sketch.pool == 16  # the pool's default: 4k


def test_a_sketch_run_stopped_between_refreshes_resumes_bit_identical(tmp_path):
    store = synthetic_store(tmp_path / "acts")
    kw = dict(encoder="sketch", tokens=90 * 256, checkpoint_every=1000)
    ref = Trainer(_config(store, tmp_path / "ref", **kw), progress=False).run()
    # stops at step 69: after a basis refresh (64), between two weight refreshes (64, 72)
    stopped = Trainer(_config(store, tmp_path / "run", **kw), progress=False, should_stop=lambda: stopped.step >= 69)
    stopped.run()
    shutil.copytree(tmp_path / "run", tmp_path / "older")
    resumed = Trainer(_config(store, tmp_path / "run", resume=True, **kw), progress=False)
    assert resumed.step == 69 and torch.equal(resumed.sketch.basis, stopped.sketch.basis)
    got = resumed.run()
    for name, tensor in ref.state_dict().items():
        assert torch.equal(tensor, got.state_dict()[name]), name
    # a run saved before the state held the pool resumes with the default of its day, 2k
    state = tmp_path / "older" / STATE_TENSORS
    save_file({k: v for k, v in load_file(state).items() if k != "sketch.pool"}, state)
    older = Trainer(_config(store, tmp_path / "older", resume=True, **kw), progress=False)
    assert (resumed.sketch.pool, older.sketch.pool) == (16, 8)


@PRECISIONS
def test_when_the_learning_rate_outruns_the_sketch_it_is_rebuilt_more_often(tmp_path, monkeypatch, matmul):
    """At a learning rate 25 times the usual, an 8-step-old sketch misses many of the top k; the
    rebuild period follows the measured recall down, and recall recovers."""
    store = synthetic_store(tmp_path / "acts", d=32, within=12)
    kw = dict(encoder="sketch", sketch_rank=28, lr=5e-2, tokens=60_000, matmul=matmul)

    def run(out):
        t = Trainer(_config(store, out, **kw), progress=False)
        t.log_every = 8
        t.run()
        recall = [h["sketch_recall"] for h in t.history if "sketch_recall" in h][1:]  # after the first adapts
        return sum(recall) / len(recall), {h["sketch_period"] for h in t.history if "sketch_period" in h}, t

    following, periods, trainer = run(tmp_path / "following")
    monkeypatch.setattr(sketch, "RECALL_LOW", -1.0)  # a period held at 8
    held, held_periods, _ = run(tmp_path / "held")
    assert held_periods == {8} and min(periods) < 8
    assert 1 - following <= (1 - held) * 2 / 3, (following, held)  # a third of the misses recovered
    restored = sketch.Sketch(32, 128, 28, 8, torch.float32, torch.device("cpu"))
    restored.load(trainer.sketch.state())
    assert restored.period == trainer.sketch.period


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(arch="relu"), "serves --arch topk only"),
        (dict(sketch_pool=3), "at least k \\(4\\)"),
        (dict(sketch_pool=10_000), "at most the width \\(128\\)"),
        (dict(sketch_rank=32), "between 1 and 31"),
        (dict(encoder="sparse"), "--encoder 'sparse' is unknown; use dense or sketch"),
    ],
)
def test_a_sketch_it_cannot_serve_is_refused_in_one_sentence(tmp_path, change, message):
    store = synthetic_store(tmp_path / "acts", shards=1, rows=512)
    cfg = _config(store, tmp_path / "sae", **{"encoder": "sketch", **change})
    with pytest.raises(UserError, match=message):
        Trainer(cfg, progress=False)
    assert not (tmp_path / "sae").exists()
