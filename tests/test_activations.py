"""Extraction to shards: what it writes, resuming after a kill, flat memory, bad input."""

from __future__ import annotations

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
from helpers import run_cli, write_images

from sae.activations import ActivationStore, extract
from sae.backbone import load_backbone
from sae.errors import UserError

CLI = [sys.executable, "-m", "sae"]


def _run(*args: str):
    return run_cli(*args)


def test_extract_writes_layer_residuals_of_every_image(tiny_clip, image_dir, tmp_path):
    bb = load_backbone(str(tiny_clip), layer=5)
    m = extract(bb, image_dir, tmp_path / "acts", token_set="all", dtype="fp32", shard_mb=0.005, progress=False)
    assert m.complete and len(m.sources) == 24 and len(m.shards) > 1
    assert m.rows == 24 * bb.n_tokens
    store = ActivationStore(tmp_path / "acts")
    first = Path(m.images_root) / m.sources[0]
    with torch.no_grad():
        expected = bb.prefix(bb.preprocess(__import__("sae.images").images.load_image(first))[None])[0]
    assert np.allclose(store.shard(0)[: bb.n_tokens], expected.numpy(), atol=1e-5)


@pytest.mark.parametrize(("token_set", "per_image"), [("patches", 4), ("cls", 1)])
def test_token_sets(tiny_clip, image_dir, tmp_path, token_set, per_image):
    bb = load_backbone(str(tiny_clip))
    m = extract(bb, image_dir, tmp_path / "acts", token_set=token_set, progress=False)
    assert m.tokens_per_image == per_image and m.rows == 24 * per_image


def test_stream_resumed_at_a_batch_equals_the_continuous_stream(tiny_clip, image_dir, tmp_path):
    bb = load_backbone(str(tiny_clip))
    extract(bb, image_dir, tmp_path / "acts", shard_mb=0.002, progress=False)
    store = ActivationStore(tmp_path / "acts")
    it = store.batches(7, seed=3, buffer_mb=0.004)
    continuous = [next(it) for _ in range(40)]  # crosses epochs (24*5 rows = 120 < 280)
    resumed = store.batches(7, seed=3, start_batch=23, buffer_mb=0.004)
    for b in range(23, 40):
        assert torch.equal(next(resumed), continuous[b])
    epoch = torch.cat(continuous)[: store.rows]
    assert len(torch.unique(epoch, dim=0)) == store.rows  # one epoch visits every row once


def test_unreadable_files_are_skipped_listed_and_warned(tiny_clip, image_dir, tmp_path):
    (image_dir / "broken.png").write_bytes(b"this is text, not a png")
    (image_dir / "empty.jpg").write_bytes(b"")
    r = _run("extract", "--model", tiny_clip, "--images", image_dir, "--out", tmp_path / "acts")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(" Skipped.") == 2
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    assert sorted(s["file"] for s in manifest["skipped"]) == ["broken.png", "empty.jpg"]
    assert manifest["rows"] == 24 * 5


def test_folder_without_images_is_one_sentence_and_nonzero_exit(tiny_clip, tmp_path):
    (tmp_path / "empty").mkdir()
    r = _run("extract", "--model", tiny_clip, "--images", tmp_path / "empty", "--out", tmp_path / "acts")
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error: No images in") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_activations_of_another_layer_are_not_mixed_in(tiny_clip, image_dir, tmp_path):
    extract(load_backbone(str(tiny_clip), layer=2), image_dir, tmp_path / "acts", progress=False)
    with pytest.raises(UserError, match="layer=2.*not 3"):
        extract(load_backbone(str(tiny_clip), layer=3), image_dir, tmp_path / "acts", progress=False)


def test_extraction_killed_mid_run_resumes_to_the_same_shards(tiny_clip, tmp_path):
    images = write_images(tmp_path / "many", 400)
    # every run a fresh process, as a user's would be: bit-identity holds at one thread count
    args = [*CLI, "extract", "--model", str(tiny_clip), "--images", str(images), "--shard-mb", "0.004"]
    args += ["--batch-size", "4"]
    ref = subprocess.run([*args, "--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    args += ["--out", str(tmp_path / "acts")]
    manifest = tmp_path / "acts" / "manifest.json"

    def shards_done() -> int:
        try:
            return len(json.loads(manifest.read_text())["shards"])
        except (OSError, ValueError):
            return 0

    killed = 0
    for wait_for in (1, 3):  # kill twice: once after the first shard, once further on
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and shards_done() < wait_for:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed == 2, "extraction finished before it could be killed; make the test workload larger"
    partial = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    assert not partial["complete"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = ActivationStore(tmp_path / "ref"), ActivationStore(tmp_path / "acts")
    assert a.manifest.shards == b.manifest.shards
    for i in range(len(a.manifest.shards)):
        assert np.array_equal(a.shard(i), b.shard(i))
    assert not list((tmp_path / "acts").glob(".tmp-*"))


_PEAK_RSS = """
import resource, sys
from sae.backbone import load_backbone
from sae.activations import extract
bb = load_backbone(sys.argv[1])
extract(bb, sys.argv[2], sys.argv[3], shard_mb=0.05, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_extraction_memory_stays_flat_as_the_image_count_grows(tiny_clip, tmp_path):
    peaks = {}
    for n in (50, 800):
        images = write_images(tmp_path / f"imgs{n}", n, size=64)
        r = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(tiny_clip), str(images), str(tmp_path / f"acts{n}")],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        peaks[n] = int(r.stdout.split()[-1]) / 1024  # MB
    # 16x the images (16x the activations written) may not cost more than a few MB more.
    assert peaks[800] - peaks[50] < 25, peaks


def test_activations_past_fp16s_range_or_not_finite_are_one_sentence(tiny_clip, image_dir, tmp_path):
    """A residual stream's outlier dimensions can pass fp16's 65,504: extraction says so instead of
    writing infinities, and a shard holding NaN stops training before it turns every weight into NaN."""
    import shutil

    from safetensors.torch import load_file, save_file

    loud = tmp_path / "loud-clip"
    shutil.copytree(tiny_clip, loud)
    weights = next(loud.glob("*.safetensors"))
    t = load_file(weights)
    t["visual.ln_pre.weight"] *= 1e6  # the residual stream a million times larger from its start
    save_file(t, weights)
    r = run_cli("extract", "--model", loud, "--images", image_dir, "--out", tmp_path / "acts", "--layer", "5")
    assert r.returncode == 2 and "beyond fp16's range; extract with --dtype fp32" in r.stderr, r.stderr
    r = run_cli("extract", "--model", loud, "--images", image_dir, "--out", tmp_path / "acts32", "--layer", "5",
                "--dtype", "fp32")  # fmt: skip
    assert r.returncode == 0, r.stderr
    store = ActivationStore(tmp_path / "acts32")
    shard = tmp_path / "acts32" / store.manifest.shards[0].file
    rows = np.load(shard)
    rows[3, 2] = np.nan
    np.save(shard, rows)
    r = run_cli("train", "--acts", tmp_path / "acts32", "--out", tmp_path / "sae", "--tokens", "512")
    assert r.returncode == 2 and "holds NaN or infinite activations" in r.stderr, r.stderr
    assert not (tmp_path / "sae" / "sae_weights.safetensors").exists()
