"""The demo world: deterministic, labelled truthfully, captioned, and buildable in --quick mode."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import run_cli

from sae.demo import world


def test_same_seed_same_scene_and_pixels():
    a = world.sample_scene(np.random.default_rng(5))
    b = world.sample_scene(np.random.default_rng(5))
    assert a == b
    assert np.array_equal(world.render(a, seed=1), world.render(b, seed=1))
    assert world.render(a, seed=1).shape == (64, 64, 3)


def test_scenes_cover_every_kind_colour_and_background():
    images, lab, captions = world.dataset(600, seed=0)
    assert lab.present.sum(0).min() > 20  # every kind appears
    assert set(np.unique(lab.background)) == set(range(len(world.BACKGROUNDS)))
    assert set(np.unique(lab.colour[lab.present == 1])) == set(range(len(world.COLOURS)))
    assert 1 <= lab.present.sum(1).min() and lab.present.sum(1).max() <= 3
    hats_on_heads = sum("wearing" in c or "on its head" in c for c in captions)
    assert hats_on_heads > 10


def test_objects_change_the_pixels_where_they_are():
    scene = world.Scene("day", [])
    empty = world.render(scene, seed=3).astype(int)
    scene.things.append(world.Thing("cat", "red", "large", 0.5, 0.6))
    with_cat = world.render(scene, seed=3).astype(int)
    diff = np.abs(with_cat - empty).sum(-1) > 30
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 150  # a large cat covers a few hundred pixels
    assert 20 < xs.mean() < 44 and 25 < ys.mean() < 50  # around its centre (32, 38)


def test_captions_name_the_objects_and_mostly_the_colours_and_place():
    rng = np.random.default_rng(0)
    scene = world.Scene(
        "desert",
        [world.Thing("cat", "red", "large", 0.5, 0.6), world.Thing("hat", "blue", "large", 0.52, 0.5, on="cat")],
    )
    texts = [world.caption(scene, rng) for _ in range(200)]
    assert all("cat" in t and "cowboy hat" in t for t in texts)
    with_colour = np.mean(["red" in t and "blue cowboy hat" in t for t in texts])
    with_place = np.mean(["desert" in t or "sand" in t for t in texts])
    assert 0.5 < with_colour < 0.8 and 0.6 < with_place < 0.9  # sometimes left out, on purpose


def test_removal_pairs_are_one_scene_with_and_without_one_object():
    images, lab, _ = world.dataset(400, seed=5, removals=True)
    having, lacking = lab.present[0::2], lab.present[1::2]
    assert (lacking <= having).all()
    gone = having.sum(1) - lacking.sum(1)
    hat = world.KINDS.index("hat")
    assert (
        (gone == 1) | ((gone == 2) & (having[:, hat] == 1) & (lacking[:, hat] == 0))
    ).all()  # a wearer takes its hat
    assert (gone == 2).any() and (lacking.sum(1) == 0).any()  # and a one-object scene leaves its bare background
    assert (lab.background[0::2] == lab.background[1::2]).all()
    # drawn with the same background details: the pixels differ only where the object was
    same = (images[0::2] == images[1::2]).all(-1).mean((1, 2))
    assert same.min() > 0.7 and np.median(same) > 0.9


def test_edit_pairs_start_from_one_scene_and_aim_at_its_pair():
    from sae.demo.decoder import edit_pair_batch

    # latents and embeddings that name their scene: index i is filled with i (twins) or 1000 + i (removals)
    twins = torch.arange(40.0).view(-1, 1, 1, 1).expand(-1, 2, 2, 2), torch.arange(40.0).view(-1, 1).expand(-1, 3)
    removals = (
        (1000 + torch.arange(60.0)).view(-1, 1, 1, 1).expand(-1, 2, 2, 2),
        (1000 + torch.arange(60.0)).view(-1, 1).expand(-1, 3),
    )
    start, target, embeds = edit_pair_batch(twins, removals, 600, torch.Generator().manual_seed(0))
    s, t = start[:, 0, 0, 0].long(), target[:, 0, 0, 0].long()
    assert start.shape == target.shape == (600, 2, 2, 2) and embeds.shape == (600, 3)
    assert torch.equal(embeds[:, 0].long(), t)  # the embedding is the target's
    assert ((s // 2 == t // 2) & (s != t)).all()  # its pair's, never its own
    assert ((s < 1000) == (t < 1000)).all()
    assert 0.25 < (s < 1000).float().mean() < 0.42  # a third from the twins
    assert 0.4 < (s % 2 == 0).float().mean() < 0.6  # both ways: an object put in, and taken out


@pytest.mark.slow
def test_quick_build_and_eval_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SAE_STUDIO_WORK", str(tmp_path / "work"))
    out = tmp_path / "demo"
    r = run_cli("demo", "build", "--quick", "--out", out, "--stages", "clip")
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.copytree(out / "clip", tmp_path / "untuned")
    r = run_cli("demo", "build", "--quick", "--out", out, "--stages", "tune,judge,sae,movq,decoder,refine")
    assert r.returncode == 0, r.stderr[-2000:]
    build = json.loads((out / "build.json").read_text())
    assert set(build) == {"clip", "tune", "judge", "sae", "movq", "decoder", "refine"}
    assert all(v["wall_seconds"] > 0 for v in build.values())
    # tune taught the CLIP's blocks before the SAE's layer; the later blocks and the text tower are untouched
    from sae.backbone import load_backbone
    from sae.demo.clip import AUX_LAYER

    untuned, tuned = (load_backbone(str(d)).model.state_dict() for d in (tmp_path / "untuned", out / "clip"))
    prefix = (
        "visual.conv1.",
        "visual.ln_pre.",
        "visual.class_embedding",
        "visual.positional_embedding",
        *(f"visual.transformer.resblocks.{i}." for i in range(AUX_LAYER)),
    )
    changed = {name: not torch.equal(w, untuned[name]) for name, w in tuned.items()}
    learnt = [name for name in changed if name.startswith(prefix)]
    assert not any(c for name, c in changed.items() if name not in learnt)
    assert sum(changed[name] for name in learnt) > 0.8 * len(learnt)
    tuning = json.loads((out / "clip" / "demo_world.json").read_text())["tuned"]
    assert tuning["embedding_cosine_to_untuned"] > 0.9  # the embedding is held where it was
    # refine trained the pipeline's movq decoder half only: the encoder the UNet learnt on is untouched
    from diffusers import VQModel

    trained, refined = (VQModel.from_pretrained(d).state_dict() for d in (out / "movq", out / "decoder" / "movq"))
    assert (out / "decoder" / "movq" / "refine.json").is_file()
    same = {name: torch.equal(w.float(), trained[name].float().half().float()) for name, w in refined.items()}
    learnt = [name for name in same if name.startswith(("decoder.", "post_quant_conv."))]
    assert all(s for name, s in same.items() if name not in learnt)
    assert sum(not same[name] for name in learnt) > 0.8 * len(learnt)  # (a few norms move less than fp16 shows)
    # the SAE comes with its index and labels, as the shipped one does (the app reads both)
    labels = json.loads((out / "sae" / "labels.json").read_text())["labels"]
    assert (out / "sae" / "index" / "index.safetensors").is_file()
    assert len(labels) == json.loads((out / "sae" / "cfg.json").read_text())["d_sae"]
    r = run_cli("demo", "eval", "--models", out, "--images", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sae best-latent AUROC cat" in r.stdout
    figures = json.loads((out / "eval.json").read_text())
    assert 0 <= figures["sae"]["concepts"]["cat"]["auroc"] <= 1
    assert "sae dead: fires on no held-out scene" in r.stdout and 0 <= figures["sae"]["dead_held_out"] <= 1
    assert figures["judge"]["background"] > 0.5  # even a toy judge tells skies apart
    assert "decoder img2img 0.5: objects+background kept" in r.stdout
    assert (out / "decoder-samples.png").is_file()
    for row in ("autoencoder", "img2img", "from_noise"):
        assert 0 <= figures["decoder"][row]["objects"] <= 1
    assert "img2img at 0.5: objects" in (out / "README.md").read_text()
    # a retrained CLIP's decoder may start from the previous decoder's UNet
    shutil.move(out / "decoder", tmp_path / "previous")
    r = run_cli("demo", "build", "--quick", "--out", out, "--stages", "decoder", "--warm-start", tmp_path / "work")
    assert r.returncode == 2 and "is not a decoder folder" in r.stderr
    r = run_cli("demo", "build", "--quick", "--out", out, "--stages", "decoder", "--warm-schedule", "continue")
    assert r.returncode == 2 and "--warm-schedule needs --warm-start" in r.stderr
    r = run_cli(
        "demo",
        "build",
        "--quick",
        "--out",
        out,
        "--stages",
        "decoder",
        "--warm-start",
        tmp_path / "previous",
        "--warm-schedule",
        "edits",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    from sae.demo.decoder import QUICK_SCENES, QUICK_STEPS, WARM_SCHEDULES

    recorded = json.loads((out / "build.json").read_text())["decoder"]
    phases = WARM_SCHEDULES["edits"]
    assert recorded["schedule"] == "edits" and recorded["edit_pairs"] == [share for *_, share in phases]
    assert recorded["steps"] == QUICK_STEPS * len(phases) and len(recorded["phases"]) == len(phases)
    # each phase starts from the UNet the one before made, and the phases' folders go when all are done
    assert len({p["warm_start"] for p in recorded["phases"]}) == len(phases)
    assert not list((tmp_path / "work" / "quick").glob("warm-edits-phase-*"))
    # stopped in its second phase, the schedule resumes there: the first phase is not trained again
    from sae.demo.decoder import train_warm

    work = tmp_path / "work" / "quick"
    first_done = work / "warm-edits-phase-1.json"
    stopped = train_warm(
        tmp_path / "again",
        out / "movq",
        out / "clip",
        work,
        tmp_path / "previous",
        "edits",
        quick=True,
        should_stop=first_done.is_file,
        progress=False,
    )
    assert stopped["phase"] == 2 and not (tmp_path / "again").exists()
    first = json.loads(first_done.read_text())["figures"]
    resumed = train_warm(
        tmp_path / "again", out / "movq", out / "clip", work, tmp_path / "previous", "edits", quick=True, progress=False
    )
    assert resumed["phases"][0] == first and resumed["steps"] == QUICK_STEPS * len(phases)
    assert (tmp_path / "again" / "unet" / "config.json").is_file() and not first_done.exists()
    assert list(work.glob(f"unet-removals-{QUICK_SCENES}-*.safetensors"))  # it trained on edit pairs
    from diffusers import UNet2DConditionModel

    from sae.backbone import weights_fingerprint

    previous = UNet2DConditionModel.from_pretrained(tmp_path / "previous" / "unet")
    warm = UNet2DConditionModel.from_pretrained(out / "decoder" / "unet")
    assert json.loads((out / "build.json").read_text())["decoder"]["warm_start"] == weights_fingerprint(previous)[:10]
    moved = max(
        float((a.float() - b.float()).norm() / b.float().norm())
        for a, b in zip(warm.state_dict().values(), previous.state_dict().values(), strict=True)
        if b.dim() > 1
    )
    assert moved < 0.2  # a few steps of fine-tuning, not a fresh start (random weights differ by ~1.4)
    # the autoencoder ships before its UNet: eval then measures it alone
    shutil.rmtree(out / "decoder")
    r = run_cli("demo", "eval", "--models", out, "--images", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "decoder autoencoder: judge agrees" in r.stdout and "img2img" not in r.stdout
    assert set(json.loads((out / "eval.json").read_text())["decoder"]) == {"autoencoder", "scenes"}


def test_fidelity_agreement_counts_whole_label_sets():
    """The judge's reading of a scene agrees with itself; with other scenes it mostly does not."""
    from sae.demo.data import world_data
    from sae.demo.fidelity import _agreement

    class ByPixels:  # a 'judge' that reads labels off the world's ground truth for known images
        def __init__(self, data):
            self.data = data

        def predict(self, images):
            rows = [int(np.flatnonzero((self.data.images == im).all(axis=(1, 2, 3)))[0]) for im in images]
            return type(
                "Out", (), {"present": self.data.present[rows].astype(float), "background": self.data.background[rows]}
            )()

    data = world_data(40, seed=11)
    judge = ByPixels(data)
    same = _agreement(judge, data.images, data.images)
    assert {k: same[k] for k in ("objects", "background", "both")} == {"objects": 1.0, "background": 1.0, "both": 1.0}
    assert all(
        v["lost"] == v["gained"] == 0 and v["present"] == data.present[:, i].sum()
        for i, v in enumerate(same["kinds"].values())
    )
    other = _agreement(judge, data.images, data.images[::-1].copy())
    assert other["objects"] < 0.5 and other["both"] <= min(other["objects"], other["background"])
    flipped = data.present[::-1]
    for i, v in enumerate(other["kinds"].values()):  # lost: shown before and not after; gained: the reverse
        assert (
            v["lost"] == (data.present[:, i] & ~flipped[:, i]).sum()
            and v["gained"] == (~data.present[:, i] & flipped[:, i]).sum()
        )
