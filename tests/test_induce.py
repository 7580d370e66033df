"""Induced sliders: found from examples, steered like latents, kept in presets, made from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sae import presets
from sae.decoders import DecodeSettings
from sae.errors import UserError
from sae.induce import InducedSlider, comparison_images, induce
from sae.steer import Edit, steer_residual


def _codes(n: int, boost: dict[int, float], seed: int, d: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g) * (torch.rand(n, d, generator=g) < 0.2)
    for i, v in boost.items():
        x[:, i] += v * (0.8 + 0.4 * torch.rand(n, generator=g))
    return x


def test_the_latents_the_examples_share_get_their_mean_difference():
    pos, neg = _codes(10, {3: 2.0, 7: 1.0}, 0), _codes(30, {}, 1)
    pos[0, 11] = 50.0  # one example's outlier is not a shared feature
    s = induce(pos, neg, "two things")
    weights = dict(s.weights)
    assert set(weights) >= {3, 7} and 11 not in weights and len(weights) <= 8
    assert weights[3] == pytest.approx(float(pos[:, 3].mean() - neg[:, 3].mean()))
    assert all(w > 0 for w in weights.values())  # non-negative by construction


def test_too_few_examples_or_nothing_shared_is_one_sentence():
    with pytest.raises(UserError, match="at least 3 example"):
        induce(_codes(2, {3: 2.0}, 0), _codes(10, {}, 1), "x")
    with pytest.raises(UserError, match="better than chance"):
        induce(_codes(5, {}, 0) * 0, _codes(10, {}, 1), "x")


def test_latents_that_separate_ten_examples_by_chance_stay_out():
    # 2,048 unrelated latents and 10 examples a side: dozens reach t >= 2 by chance alone (the
    # old fixed cut took eight of them along); the permutation threshold keeps the one real one.
    pos, neg = _codes(10, {5: 1.5}, 0, d=2048), _codes(10, {}, 1, d=2048)
    d = pos.double().mean(0) - neg.double().mean(0)
    t = d / (pos.double().var(0) / 10 + neg.double().var(0) / 10).sqrt().clamp_min(1e-9)
    assert int(((t >= 2) & (d > 0)).sum()) > 8  # what the test is about: chance does pass t = 2
    assert [i for i, _ in induce(pos, neg, "one thing").weights] == [5]
    with pytest.raises(UserError, match="better than chance"):
        induce(_codes(10, {}, 2, d=2048), neg, "nothing")


def test_an_induced_edit_steers_as_its_latents_added_one_by_one():
    from sae.model import SparseAutoencoder
    from sae.sae_config import SaeConfig, SaeMetadata

    sae = SparseAutoencoder(SaeConfig(16, 64, "topk", 4), SaeMetadata(backbone="tiny", layer=1))
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    sae.initialize(x, generator=torch.Generator().manual_seed(0))
    code = sae.encode(x)
    slider = InducedSlider("mix", ((3, 0.5), (9, 2.0)))
    with torch.no_grad():
        a = steer_residual(x, sae, code, [slider.edit(1.5, mask=(0, 2))])
        b = steer_residual(x, sae, code, [Edit(3, "add", 0.75, (0, 2)), Edit(9, "add", 3.0, (0, 2))])
        assert torch.equal(a, b) and not torch.equal(a, x)
        assert torch.equal(steer_residual(x, sae, code, [slider.edit(0.0)]), x)
    with pytest.raises(UserError, match="only adds"):
        Edit(-1, "scale", 2.0, None, "mix", weights=((3, 0.5),))


def _preset(edits, region: str = "whole"):
    # "whole": the version follows the edits alone (an edit region makes any preset version 3)
    return presets.Preset(presets.SaeIdentity("ab" * 32, 64, 16, "tiny", 3), edits, DecodeSettings(region=region))


def test_presets_keep_induced_sliders_and_stay_version_1_without_them(tmp_path):
    slider = InducedSlider("red object", ((3, 0.5), (9, 2.0)))
    p = _preset([Edit(5, "add", 2.0, None, "cat"), slider.edit(1.25, mask=(1, 2))])
    p.save(tmp_path / "p.json")
    raw = json.loads((tmp_path / "p.json").read_text())
    assert raw["version"] == 2 and raw["edits"][1]["slider"] == {"name": "red object", "weights": [[3, 0.5], [9, 2.0]]}
    back = presets.load(tmp_path / "p.json")
    assert back.edits[1].weights == slider.weights and back.edits[1].label == "red object"
    assert back.edits[1].value == 1.25 and back.edits[1].mask == (1, 2)
    assert _preset([Edit(5, "add", 2.0)]).to_json()["version"] == 1  # older readers keep reading these
    assert _preset([Edit(5, "add", 2.0)], region="edited").to_json()["version"] == 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.update(mode="scale"), "only add"),
        (lambda e: e["slider"]["weights"].append([64, 1.0]), "names latent 64"),
        (lambda e: e["slider"]["weights"].append([2, 1e9]), "outside the allowed"),
        (lambda e: e["slider"].update(weights=[]), "weights"),
        (lambda e: e.update(latent=4), "edits/0"),  # a latent and a slider at once
    ],
)
def test_bad_induced_sliders_in_presets_are_one_sentence(mutate, message):
    d = _preset([InducedSlider("s", ((3, 0.5),)).edit(1.0)]).to_json()
    mutate(d["edits"][0])
    with pytest.raises(UserError, match=message):
        presets.parse(json.dumps(d))


def test_comparison_images_come_from_the_index_or_say_what_to_give(tiny_clip, tmp_path):
    from types import SimpleNamespace

    from sae.backbone import load_backbone

    bb = load_backbone(str(tiny_clip))
    folder = tmp_path / "seen"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    index = SimpleNamespace(root=str(folder), sources=[f"{i}.png" for i in range(6)])
    got = comparison_images(bb, index, exclude=[folder / "0.png"], n=4)
    assert 2 <= len(got) <= 4 and all(im.getpixel((0, 0)) != (0, 0, 0) for im in got)
    with pytest.raises(UserError, match="Give some images without the concept"):
        comparison_images(bb, SimpleNamespace(root=str(tmp_path / "gone"), sources=index.sources), exclude=[])


def test_cli_induces_a_slider_from_example_folders_that_edit_can_replay(tmp_path, capsys):
    """On the shipped demo SAE: scenes with a cat against scenes without; the preset names the SAE
    and the slider (the demo SAE has a cat detector, AUROC 0.99, which ten examples a side find)."""
    from sae.cli import main
    from sae.demo import world
    from sae.demo.build import DEMO

    if not (DEMO / "sae").is_dir():
        pytest.skip("the demo SAE is not built")
    rng = np.random.default_rng(0)
    for name, cat in (("cats", True), ("others", False)):
        (tmp_path / name).mkdir()
        i = 0
        while i < 10:
            scene = world.sample_scene(rng)
            if any(t.kind == "cat" for t in scene.things) == cat:
                Image.fromarray(world.render(scene, i)).save(tmp_path / name / f"{i}.png")
                i += 1
    code = main(
        [
            "induce",
            str(tmp_path / "cats"),
            "--negatives",
            str(tmp_path / "others"),
            "--name",
            "cat",
            "--value",
            "2",
            "-o",
            str(tmp_path / "cat.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "slider 'cat' =" in out
    p = presets.load(tmp_path / "cat.json")
    assert presets.sae_sha256(DEMO / "sae") == p.sae.sha256
    [edit] = p.edits
    assert edit.label == "cat" and edit.value == 2.0 and 1 <= len(edit.weights) <= 8
    detector = json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"]["cat"]["latent"]
    assert detector in [latent for latent, _ in edit.weights]  # it found the SAE's cat detector
    from sae.features import FeatureIndex

    home = FeatureIndex.load(DEMO / "sae").home_tokens  # the slider edits where its latents fire
    assert edit.tokens == ("patches" if all(home(i) == "patches" for i, _ in edit.weights) else "all")
    assert InducedSlider("x", ((detector, 1.0),)).home_tokens(home) == "patches"
    assert main(["induce", str(tmp_path / "cats" / "0.png"), "--name", "red", "-o", str(tmp_path / "x.json")]) != 0
    assert "at least 3 example" in capsys.readouterr().err


def test_a_broad_heavy_latent_that_blurs_the_concept_stays_out():
    # Latent 5 is the concept: a steady boost. Latent 9 is also higher on the examples, beyond
    # chance, but fires widely and unevenly with 4x the weight: added, it would swamp latent 5.
    g = torch.Generator().manual_seed(3)
    pos, neg = _codes(10, {5: 1.5}, 0, d=512), _codes(10, {}, 1, d=512)
    pos[:, 9] = 6.0 + 4.0 * torch.rand(10, generator=g) * 2
    neg[:, 9] = 2.0 * torch.rand(10, generator=g)
    from sae.induce import chance_t, t_scores

    d, t = t_scores(pos.double(), neg.double())
    assert d[9] > 2 * d[5] and t[9] > chance_t(pos.double(), neg.double())  # it passes the threshold
    assert [i for i, _ in induce(pos, neg, "steady").weights] == [5]
