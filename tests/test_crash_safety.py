"""kill -9 in the middle of a write leaves the previous version whole and the next start clean.

Each test runs a real child process that writes the same file or folder over and over (two
alternating versions), kills it with SIGKILL at scattered moments, and checks what is on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import write_images

from sae import presets
from sae.model import SparseAutoencoder

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

PRESET_WRITER = """
import sys
from sae.decoders import DecodeSettings
from sae.presets import Preset, SaeIdentity
from sae.steer import Edit
i = 0
while True:
    value = float(1 + i % 2)
    edits = [Edit(j, "add", value, None, "x" * 200) for j in range(60)]
    Preset(SaeIdentity("ab" * 32, 64, 16, "tiny", 3), edits, DecodeSettings(seed=4)).save(sys.argv[1])
    if i == 0:
        print("ready", flush=True)
    i += 1
"""

SAE_WRITER = """
import sys, torch
from sae.model import SparseAutoencoder
from sae.sae_config import SaeConfig, SaeMetadata
saes = []
for fill in (1.0, 2.0):
    sae = SparseAutoencoder(SaeConfig(64, 1024, "topk", 8), SaeMetadata(backbone="tiny", layer=2))
    with torch.no_grad():
        sae.b_enc.fill_(fill)
    saes.append(sae)
i = 0
while True:
    saes[i % 2].save(sys.argv[1])
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def _kill_during(code: str, target, delays) -> None:
    """Start ``code`` writing ``target``; after its first complete write, SIGKILL it after each delay."""
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        yield


DELAYS = (0.0, 0.003, 0.011, 0.02, 0.037, 0.05, 0.09)


def _litter(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_kill_9_during_preset_saves_leaves_a_whole_preset(tmp_path):
    path = tmp_path / "look.json"
    for _ in _kill_during(PRESET_WRITER, path, DELAYS):
        p = presets.load(path)  # always parses: the old or the new version, never half
        assert {e.value for e in p.edits} in ({1.0}, {2.0})
    presets.load(path).save(path)  # the next save clears what killed writers left
    assert _litter(tmp_path) == []


def test_kill_9_during_sae_saves_leaves_a_whole_sae(tmp_path):
    folder = tmp_path / "sae"
    for _ in _kill_during(SAE_WRITER, folder, DELAYS):
        sae = SparseAutoencoder.load(folder)  # recovers a swap cut between its two renames
        b = sae.b_enc.detach()
        assert float(b[0]) in (1.0, 2.0) and torch.all(b == b[0])
        assert _litter(tmp_path) == []


INDEXER = """
import sys
from sae.backbone import load_backbone
from sae.features import build_index
from sae.model import SparseAutoencoder
sae = SparseAutoencoder.load(sys.argv[2])
bb = load_backbone(sys.argv[1], layer=sae.metadata.layer)
build_index(sys.argv[2], bb, sae, sys.argv[3], batch_size=4, chunk=8, progress=False)
"""


@pytest.mark.slow
def test_kill_9_during_an_index_update_resumes_to_the_same_index(tiny_clip, tmp_path):
    from sae.backbone import load_backbone
    from sae.features import FeatureIndex, build_index
    from sae.sae_config import SaeConfig, SaeMetadata

    images = write_images(tmp_path / "images", 160)
    bb = load_backbone(str(tiny_clip), layer=6)
    sae = SparseAutoencoder(SaeConfig(bb.width, 4 * bb.width, "topk", 4), SaeMetadata(backbone=str(tiny_clip), layer=6))
    sae.initialize(
        torch.randn(256, bb.width, generator=torch.Generator().manual_seed(0)),
        generator=torch.Generator().manual_seed(0),
    )
    for name in ("ref", "killed"):
        sae.save(tmp_path / name)
    reference = build_index(tmp_path / "ref", bb, sae, images, batch_size=4, chunk=8, progress=False)

    def indexed() -> int:
        try:
            return len(FeatureIndex.load(tmp_path / "killed").sources)
        except Exception:  # noqa: BLE001 - not written yet
            return 0

    killed = 0
    for at_least in (8, 40):
        proc = subprocess.Popen([sys.executable, "-c", INDEXER, str(tiny_clip), str(tmp_path / "killed"), str(images)])
        while proc.poll() is None and indexed() < at_least:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        partial = FeatureIndex.load(tmp_path / "killed")  # the last whole chunk, loadable
        assert 0 < len(partial.sources) < 160
    assert killed == 2, "indexing finished before it could be killed; make the workload larger"
    resumed = build_index(tmp_path / "killed", bb, sae, images, batch_size=4, chunk=8, progress=False)
    assert resumed.sources == reference.sources and len(resumed.sources) == 160
    assert torch.equal(resumed.count, reference.count) and torch.allclose(resumed.max, reference.max)
    assert torch.equal(resumed.top_images, reference.top_images)
    assert _litter(tmp_path / "killed" / "index") == []
