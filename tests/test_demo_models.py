"""The shipped demo models: they load from assets/ with no network and meet their figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sae.assets import ASSETS, DEMO, SAMPLES
from sae.backbone import load_backbone
from sae.demo import world
from sae.demo.data import world_data
from sae.demo.judge import Judge, accuracy
from sae.demo.metrics import auroc_per_column
from sae.demo.sae_recipe import image_codes
from sae.model import SparseAutoencoder

HELD_OUT = 2  # world seed no shipped model trained on


def _shipped(stage: str):
    """Models still in training are not in assets/ yet; their tests say so instead of failing CI."""
    built = (DEMO / stage).exists() and not (DEMO / stage / "trainer_state.json").exists()
    return pytest.mark.skipif(not built, reason=f"assets/demo/{stage} has not been built yet")


@pytest.fixture(scope="module")
def held_out():
    # the scenes `demo eval` measures on: an AUROC from 600 scenes (~120 with a given kind) moves by
    # about 0.01 from one sample to the next, as much as a kind's margin over its target
    return world_data(2_000, seed=HELD_OUT)


@pytest.fixture(scope="module")
def judge():
    if not (DEMO / "judge").exists():
        pytest.skip("assets/demo/judge has not been built yet")
    return Judge.load(DEMO / "judge")


def test_assets_stay_under_60_mb():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 60 * 2**20, f"assets/ holds {total / 2**20:.1f} MB"


def test_shipped_clip_loads_through_open_clip_and_splits_mid_way():
    bb = load_backbone(str(DEMO / "clip"))
    assert (bb.n_layers, bb.layer, bb.image_size, bb.n_tokens) == (6, 3, 64, 65)
    image = bb.preprocess(Image.open(SAMPLES / "cat-on-grass.png"))[None]
    with torch.no_grad():
        assert torch.allclose(bb.suffix(bb.prefix(image)), bb.encode_image(image), atol=1e-5)
        text = bb.encode_text(["a picture of a cat", "a picture of a car"])
        img = torch.nn.functional.normalize(bb.encode_image(image), dim=-1)
        sims = img @ torch.nn.functional.normalize(text, dim=-1).T
    assert sims[0, 0] > sims[0, 1]  # it sees the cat in the cat sample


def test_judge_meets_its_accuracy_on_a_fixed_held_out_set(judge, held_out):
    figures = accuracy(judge, held_out)
    assert figures["presence"] >= 0.97 and figures["background"] >= 0.97 and figures["colour"] >= 0.95, figures


def test_judge_reads_the_shipped_samples(judge):
    names = ["cat-on-grass", "dog-in-a-hat", "empty-desert"]
    images = np.stack([np.asarray(Image.open(SAMPLES / f"{n}.png").convert("RGB")) for n in names])
    out = judge.predict(images)
    seen = [{world.KINDS[i] for i in np.flatnonzero(p > 0.5)} for p in out.present]
    assert "cat" in seen[0] and {"dog", "hat"} <= seen[1] and seen[2] == set()
    assert [world.BACKGROUNDS[b] for b in out.background] == ["day", "desert", "desert"]


def test_judge_survives_blur_and_noise(judge, held_out):
    """Robust to a decoder's softness: a blurred, noisy copy keeps most labels."""
    x = torch.from_numpy(held_out.images[:300]).permute(0, 3, 1, 2).float()
    soft = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    soft = (soft + torch.randn(soft.shape, generator=torch.Generator().manual_seed(0)) * 6).clamp(0, 255)
    damaged = soft.permute(0, 2, 3, 1).round().to(torch.uint8).numpy()
    a, b = judge.predict(held_out.images[:300]), judge.predict(damaged)
    assert ((a.present > 0.5) == (b.present > 0.5)).mean() > 0.95


def test_judge_reads_a_jpeg_copy_as_its_original(judge, held_out):
    """A referee must not count compression a person cannot see: on JPEG copies at quality 75 the
    judged kinds of nearly every scene stay the same (the first judge kept 86% of these 500)."""
    from sae.demo.evaluate import TARGETS
    from sae.demo.judge import compress

    scenes = held_out.images[:500]
    a, b = judge.predict(scenes).present > 0.5, judge.predict(compress(scenes, 75)).present > 0.5
    assert (a == b).all(1).mean() >= TARGETS["judge.jpeg_agreement"]


@pytest.fixture(scope="module")
def shipped_codes(held_out):
    sae = SparseAutoencoder.load(DEMO / "sae")
    bb = load_backbone(str(DEMO / "clip"), layer=sae.metadata.layer)
    assert sae.d_in == bb.width and sae.metadata.backbone_fingerprint == bb.fingerprint
    return image_codes(bb, sae, held_out.images)


@_shipped("sae")
@pytest.mark.parametrize("kind", world.KINDS)
def test_default_sae_has_a_latent_for_every_object(shipped_codes, held_out, kind):
    best = np.nanmax(auroc_per_column(shipped_codes, held_out.present[:, world.KINDS.index(kind)]))
    assert best >= 0.95, f"{kind}: best latent AUROC {best:.3f}"


@_shipped("sae")
def test_default_sae_latents_all_fire_on_held_out_scenes():
    """Fewer than 1% of the shipped latents fire on no token of 10,000 scenes none of the models saw."""
    from sae.demo.sae_recipe import dead_held_out

    sae = SparseAutoencoder.load(DEMO / "sae")
    assert dead_held_out(load_backbone(str(DEMO / "clip"), layer=sae.metadata.layer), sae) < 0.01


@_shipped("sae")
def test_default_sae_loads_in_saelens_with_the_same_activations():
    sae_lens = pytest.importorskip("sae_lens")
    ours = SparseAutoencoder.load(DEMO / "sae")
    theirs = sae_lens.SAE.load_from_disk(str(DEMO / "sae"))
    x = torch.randn(64, ours.d_in, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), ours.encode(x), atol=1e-5)


@_shipped("README.md")
def test_every_shipped_model_has_a_card_line():
    card = (DEMO / "README.md").read_text()
    for word in ("tiny CLIP", "judge", "SAE", "zero-shot", "AUROC", "training time"):
        assert word in card
    assert Path(DEMO / "build.json").is_file()


@_shipped("sae")
def test_object_latents_are_edited_on_the_patches_they_fire_on():
    """The shipped index says where each latent fires. The detectors of small objects (cat, ball,
    tree, sun, flower) fire on their object's patches and hardly on the class token, so their
    sliders edit the patches alone; the hat latent fires on the class token, so its sliders edit
    every token."""
    import json

    from sae.features import FeatureIndex

    index = FeatureIndex.load(DEMO / "sae")
    concepts = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]
    assert [index.home_tokens(concepts[k]["latent"]) for k in ("cat", "ball", "tree", "sun", "flower")] == [
        "patches"
    ] * 5
    assert index.home_tokens(concepts["hat"]["latent"]) == "all"


@_shipped("sae")
def test_labels_name_what_their_latents_fire_on(judge):
    """Each object kind's best detector (AUROC) is labelled with its kind, and of all the latents
    whose label names an object kind, the judge sees that kind in at least half of the top 8 indexed
    images for most (0.78; labelled by their effect alone, 0.18, and the flower detector "cat")."""
    import json

    from sae.features import FeatureIndex, thumbnail_path
    from sae.labels import read_labels

    labels = read_labels(DEMO / "sae")
    concepts = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]
    assert all(kind in labels[concepts[kind]["latent"]] for kind in world.KINDS), labels
    index = FeatureIndex.load(DEMO / "sae")
    agree = []
    for latent, label in labels.items():
        top = [int(i) for i in index.top_images[latent, :8] if i >= 0]
        if label not in world.KINDS or not top:
            continue
        images = np.stack([np.asarray(Image.open(thumbnail_path(DEMO / "sae", i)).convert("RGB")) for i in top])
        agree.append((judge.predict(images).present[:, world.KINDS.index(label)] > 0.5).mean() >= 0.5)
    assert len(agree) >= 100 and np.mean(agree) >= 0.7, (len(agree), np.mean(agree))


@pytest.mark.parametrize(
    ("query", "concept"),
    [
        ("cat", "cat"),
        ("cowboy hat", "hat"),
        ("dog", "dog"),
        ("night", "night"),
    ],
)
def test_search_finds_the_true_latent_in_the_top_three(held_out, query, concept):
    """The latent that best separates scenes with the concept (AUROC) is among the top 3 hits.

    A background such as night is told apart perfectly by dozens of latents (AUROC 1.0 for a
    "black object" latent as for a "night" one), so "the best" is any latent within 0.001 of the
    best AUROC: a tie is not broken by index order. Effect directions alone ranked three partial
    night latents (the sky's corners, its stars) above the perfect detector; the index's image
    evidence (does the latent fire on the images CLIP matches to "night"?) lifts it to the top."""
    from sae.labels import load_directions, read_labels, search

    if not (DEMO / "sae" / "labels.json").is_file() or not (DEMO / "sae" / "index").is_dir():
        pytest.skip("the default SAE ships without its index and labels yet")
    sae = SparseAutoencoder.load(DEMO / "sae")
    bb = load_backbone(str(DEMO / "clip"), layer=sae.metadata.layer)
    codes = image_codes(bb, sae, held_out.images)
    truth = (
        held_out.background == world.BACKGROUNDS.index(concept)
        if concept in world.BACKGROUNDS
        else held_out.present[:, world.KINDS.index(concept)] == 1
    )
    auroc = np.nan_to_num(auroc_per_column(codes, truth))
    with torch.no_grad():
        q = torch.nn.functional.normalize(bb.encode_text([query]), dim=-1)[0]
    hits = search(query, q, load_directions(DEMO / "sae"), read_labels(DEMO / "sae"), top=3)
    found = max(auroc[h.latent] for h in hits)
    assert found >= auroc.max() - 1e-3, (
        int(auroc.argmax()),
        float(auroc.max()),
        [(h.latent, auroc[h.latent]) for h in hits],
    )


@pytest.fixture(scope="module")
def shipped_decoder():
    from sae.decoders.registry import load_decoder

    return load_decoder("demo", load_backbone(str(DEMO / "clip")))


@pytest.fixture(scope="module")
def decoded(shipped_decoder, held_out):
    """256 held-out scenes decoded from their own CLIP embedding img2img at 0.5, batch by batch as
    `demo eval` measures it, and the first 64 also from pure noise: one pass for every test below."""
    from sae.demo.fidelity import batched_round_trips

    scenes = held_out.images[:256]
    backbone = load_backbone(str(DEMO / "clip"))
    kept, _ = batched_round_trips(shipped_decoder, backbone, scenes, paint=False)
    _, painted = batched_round_trips(shipped_decoder, backbone, scenes[:64], batch=64, paint_only=True)
    return scenes, kept, painted


@_shipped("decoder")
def test_shipped_decoder_paints_the_scene_its_embedding_describes(judge, decoded):
    """From pure noise, the embedding alone sets the background; img2img at 0.5 keeps it too."""
    from sae.demo.fidelity import _agreement

    scenes, kept, painted = decoded
    assert _agreement(judge, scenes[:64], painted)["background"] >= 0.95
    assert _agreement(judge, scenes[:64], kept[:64])["background"] >= 0.95


@_shipped("decoder")
def test_shipped_decoder_paints_the_objects_its_embedding_describes(judge, decoded):
    """From pure noise, the kinds the judge reads on a painting agree with its own scene's far
    more often than with another scene's: the objects come from the embedding."""
    scenes, _, painted = decoded
    truth, got = judge.predict(scenes[:64]).present > 0.5, judge.predict(painted).present > 0.5
    own = (got & truth).sum() / max(truth.sum(), 1)
    other = (got & np.roll(truth, 1, axis=0)).sum() / max(truth.sum(), 1)
    assert own > 2 * other, (own, other)


@_shipped("decoder")
def test_shipped_decoder_meets_its_img2img_fidelity_target(judge, decoded):
    """On 256 held-out scenes, as `demo eval` measures it: the rate is close enough to the target
    that 64 scenes swing between 0.91 and 0.98 from one seed to the next (1,024 scenes: 0.963)."""
    from sae.demo.evaluate import TARGETS
    from sae.demo.fidelity import _agreement

    scenes, kept, _ = decoded
    assert _agreement(judge, scenes, kept)["both"] >= TARGETS["decoder.img2img"]


def _unedited_and_edited(scenes, edit) -> tuple[torch.Tensor, torch.Tensor]:
    """Each scene's image embedding through the shipped CLIP and SAE, unedited and with ``edit``."""
    from sae.demo.session import default_session

    session = default_session(decoder=False)
    plain, edited = [], []
    for im in scenes:
        session.set_image(Image.fromarray(im))
        plain.append(session.embedding([]))
        edited.append(session.embedding([edit]))
    return torch.stack(plain), torch.stack(edited)


@_shipped("decoder")
def test_an_edit_region_removes_the_hat_and_keeps_the_rest_of_the_scene(judge, shipped_decoder):
    """Issue 6's removal at the demo decoder's defaults (strength 0.9, only the edit region
    repainted), on 48 scenes with a hat no bench uses: the hat latent set to 0 takes the hat away in
    most of them (the bench: 0.97 of 200) while the rest of the scene stays as the judge read it; an
    unedited image comes back whole, where plain img2img at that strength loses an object in a
    third of scenes."""
    import json

    from sae.decoders import DecodeSettings, default_strength
    from sae.demo.fidelity import _agreement, preservation
    from sae.steer import Edit

    hat = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]["hat"]["latent"]
    rng = np.random.default_rng(21)
    scenes = [world.render(world.sample_scene(rng, include=("hat",)), seed=i) for i in range(48)]
    plain, edited = _unedited_and_edited(scenes, Edit(hat, "set", 0.0))
    pil = [Image.fromarray(im) for im in scenes]

    def paint(embeds, region):
        settings = DecodeSettings(strength=default_strength("demo"), seed=0, region=region)
        return np.stack([np.asarray(x) for x in shipped_decoder.decode_many(embeds, pil, settings, plain)])

    kept = paint(plain, "edited")
    left = _agreement(judge, np.stack(scenes), kept)["both"]
    left_whole = _agreement(judge, np.stack(scenes), paint(plain, "whole"))["both"]
    assert left >= 0.95 and left >= left_whole + 0.15, (left, left_whole)
    before, after = judge.predict(kept), judge.predict(paint(edited, "edited"))
    k = world.KINDS.index("hat")
    had = before.present[:, k] > 0.5
    assert (after.present[had, k] <= 0.5).mean() >= 0.7
    assert preservation(before, after, "hat") >= 0.9


@_shipped("decoder")
def test_raising_the_cat_latent_paints_a_cat_and_keeps_the_rest_of_the_scene(judge, shipped_decoder):
    """Issue 6's addition at the demo decoder's defaults, on 48 scenes without a cat that no bench
    uses: the cat latent raised by 1.5 units on the tokens where it fires (as a new slider does) makes
    the judge see a cat in most of them (here 0.85, keeping 0.90 of the other labels; the UNet before
    edit pairs: 0.60), while an unedited decode shows none."""
    import json

    from sae.decoders import DecodeSettings, default_strength
    from sae.demo.fidelity import preservation
    from sae.features import FeatureIndex
    from sae.steer import Edit

    index = FeatureIndex.load(DEMO / "sae")
    cat = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]["cat"]["latent"]
    amount = 1.5 * float(index.typical_max()[cat])
    rng = np.random.default_rng(22)
    scenes = [world.render(world.sample_scene(rng, exclude=("cat",)), seed=i) for i in range(48)]
    plain, edited = _unedited_and_edited(scenes, Edit(cat, "add", amount, tokens=index.home_tokens(cat)))
    pil = [Image.fromarray(im) for im in scenes]
    settings = DecodeSettings(strength=default_strength("demo"), seed=0)

    def paint(embeds):
        return np.stack([np.asarray(x) for x in shipped_decoder.decode_many(embeds, pil, settings, plain)])

    before, after = judge.predict(paint(plain)), judge.predict(paint(edited))
    k = world.KINDS.index("cat")
    assert (before.present[:, k] > 0.5).mean() <= 0.05
    assert (after.present[:, k] > 0.5).mean() >= 0.7
    assert preservation(before, after, "cat") >= 0.85


@_shipped("decoder")
def test_a_causal_preview_shows_the_object_its_latent_detects(judge):
    """Each object kind's best latent, previewed on its own on the empty canvas (the editor's and
    `features --preview`'s settings: on the tokens where the latent fires), three seeds each: the
    judge sees that kind in 80% of the 30 previews (on every token: 60%; at the earlier strength
    0.8 and 2 units: 3%)."""
    import json

    from sae.decoders import DecodeSettings
    from sae.demo.session import default_session
    from sae.features import FeatureIndex
    from sae.session import PREVIEW_STRENGTH, PREVIEW_UNITS

    session = default_session()
    index = FeatureIndex.load(DEMO / "sae")
    unit = index.typical_max()
    concepts = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]
    seen = []
    for kind in world.KINDS:
        latent = concepts[kind]["latent"]
        for seed in range(3):
            preview = session.causal_preview(
                latent,
                PREVIEW_UNITS * float(unit[latent]),
                DecodeSettings(strength=PREVIEW_STRENGTH, seed=seed),
                tokens=index.home_tokens(latent),
            )
            seen.append(
                judge.predict(np.asarray(preview.convert("RGB"))[None]).present[0, world.KINDS.index(kind)] > 0.5
            )
    assert np.mean(seen) >= 0.6, np.mean(seen)
