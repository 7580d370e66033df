"""Calibrated slider units (sae.calibration, sae.units): measured on the shipped demo SAE, kept
beside its index and read back, refused quietly when damaged, recorded in presets, and swept
into a strip by ``sae-studio sweep``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sae.assets import SAMPLES
from sae.demo.build import DEMO
from sae.units import Scale

pytestmark = pytest.mark.skipif(not (DEMO / "sae" / "index").is_dir(), reason="the shipped demo SAE is not built")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The shipped demo SAE in a folder of its own (so its calibrations are measured, not shipped)."""
    from sae.backbone import load_backbone
    from sae.workspace import Workspace

    folder = tmp_path_factory.mktemp("calibration") / "sae"
    shutil.copytree(DEMO / "sae", folder, ignore=shutil.ignore_patterns("calibration.json"))
    return Workspace.open(folder, backbone=load_backbone(str(DEMO / "clip")))


def _concept(name: str) -> int:
    return json.loads((DEMO / "eval.json").read_text())["sae"]["concepts"][name]["latent"]


def test_one_calibrated_unit_moves_the_embedding_its_share_of_the_features_separation_and_is_kept(
    workspace, monkeypatch
):
    from sae.calibration import SATURATION_SHARE, UNIT_SHARE, read, response
    from sae.workspace import Workspace

    cat, tree = _concept("cat"), _concept("tree")
    c = workspace.calibration(cat)
    assert c.calibrated and c.up.saturation > 1 and c.down.saturation > 1
    scale = c.scale(workspace.unit(cat))
    assert scale.calibrated and scale.amount(1.0) == pytest.approx(c.up.unit)
    assert scale.amount(-1.0) == pytest.approx(-workspace.unit(cat))  # below zero: what typically fires
    # measured again by the editor's own edit path: one unit up moves the embedding UNIT_SHARE of
    # the way the pictures the latent fires on most lie from ordinary ones (measured here from the
    # thumbnails themselves), and each side's range ends where its response reaches
    # SATURATION_SHARE of its far end
    bb, sae, neutral = workspace.backbone, workspace.sae, workspace._neutral
    thumbs = sorted((workspace.folder / "index" / "thumbs").iterdir())
    ordinary = read(bb, sae, torch.stack([bb.preprocess(Image.open(p).convert("RGB")) for p in thumbs[::4]])).base
    moved = {}
    purple = 427  # the demo SAE's best purple detector: its pictures lie nearer ordinary ones than a cat's
    assert "purple" in workspace.labels[purple]
    for latent in (cat, tree, purple):
        top = read(bb, sae, workspace._firing_pixels(latent)).base
        separation = float((top.mean(0) - ordinary.mean(0)).norm())
        cal, tokens = workspace.calibration(latent), workspace.home_tokens(latent)
        moved[latent] = _moved(bb, sae, latent, tokens, neutral, cal.up.unit)
        assert moved[latent] == pytest.approx(UNIT_SHARE * separation, rel=0.15), (latent, separation)
        far = response(bb, sae, latent, tokens, neutral, 1.0).far
        end = _moved(bb, sae, latent, tokens, neutral, cal.up.unit * cal.up.saturation)
        assert end == pytest.approx(SATURATION_SHARE * far, rel=0.15)
        firing = read(bb, sae, workspace._firing_pixels(latent))
        far = response(bb, sae, latent, tokens, firing, -1.0).far
        end = _moved(bb, sae, latent, tokens, firing, -cal.down.unit * cal.down.saturation)
        assert cal.down.unit == pytest.approx(workspace.unit(latent))
        assert end == pytest.approx(SATURATION_SHARE * far, rel=0.15)
    assert moved[cat] > 1.25 * moved[purple]  # a distance of each latent's own
    passes = []
    up = workspace.responses(cat, between=lambda: passes.append(1)).up
    assert list(up.change) == sorted(up.change)  # more slider, more change, up to where it levels off
    assert len(passes) == 2 * (len(up.values) + 2)  # before each encoder pass (each value, FAR, a read)

    again = Workspace.open(workspace.folder, backbone=workspace.backbone)
    monkeypatch.setattr(Workspace, "responses", lambda *a: pytest.fail("measured again instead of read"))
    assert again.calibration(cat) == c
    # the ordinary pictures' mean is kept too: a new session does not read them again
    assert torch.allclose(again.calibrations.ordinary, workspace.calibrations.ordinary)
    assert again._ordinary(lambda: pytest.fail("read again")) is again.calibrations.ordinary


def test_removal_is_in_typical_activations_and_keeps_its_measured_range_end():
    from sae.calibration import SATURATION_SHARE, UNIT_DISTANCE, UNIT_SHARE, Response, Responses, calibrated, side

    values = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])
    change = torch.tensor([0.1, 0.3, 0.6, 0.8, 0.85])
    up, down = Response(values, change, 0.9), Response(-values, change, 0.9)
    c = calibrated(Responses(up, down, separation=0.5), typical=3.0)
    assert c.up.unit == pytest.approx(up.value_at(UNIT_SHARE * 0.5)) and c.down.unit == 3.0
    assert c.down.unit * c.down.saturation == pytest.approx(abs(down.value_at(SATURATION_SHARE * 0.9)))
    for unknown in (0.0, float("nan")):  # no index to say what typically fires: the distance unit
        assert calibrated(Responses(up, down, 0.5), typical=unknown).down == side(down)
    # no pictures to measure the separation on: one unit is a fixed distance
    assert calibrated(Responses(up, down, None), typical=3.0).up.unit == pytest.approx(up.value_at(UNIT_DISTANCE))


def _moved(bb, sae, latent, tokens, pictures, amount) -> float:
    """Mean distance the normalised embedding moves when ``amount`` is added (the editor's path)."""
    from sae.steer import Edit, steer_residual

    edit = [Edit(latent, "add", amount, tokens=tokens)]
    positions = bb.token_positions(sae.metadata.token_set)
    with torch.inference_mode():
        edited = torch.stack(
            [steer_residual(r, sae, c, edit, positions) for r, c in zip(pictures.resid, pictures.codes, strict=True)]
        )
        moved = torch.nn.functional.normalize(bb.suffix(edited), dim=-1) - pictures.base
    return float(moved.norm(dim=-1).mean())


def test_a_latent_that_moves_nothing_keeps_its_old_unit_and_says_why(workspace):
    from sae.workspace import Workspace

    ws = Workspace.open(workspace.folder, backbone=workspace.backbone)
    dead = 5
    with torch.no_grad():
        ws.sae.W_dec[dead].zero_()
    c = ws.calibration(dead, keep=False)
    assert not c.calibrated and "less than" in c.reason
    scale = c.scale(2.5)
    assert not scale.calibrated and scale.up == 2.5 and scale.why == c.reason


def test_without_thumbnails_a_unit_is_a_fixed_distance(workspace, tmp_path):
    from sae.calibration import UNIT_DISTANCE
    from sae.workspace import Workspace

    folder = tmp_path / "sae"
    shutil.copytree(workspace.folder, folder, ignore=shutil.ignore_patterns("thumbs", "calibration.json"))
    ws = Workspace.open(folder, backbone=workspace.backbone)
    cat = _concept("cat")
    assert ws.responses(cat).separation is None
    cal = ws.calibration(cat, keep=False)
    moved = _moved(ws.backbone, ws.sae, cat, ws.home_tokens(cat), ws._neutral, cal.up.unit)
    assert moved == pytest.approx(UNIT_DISTANCE, rel=0.15)


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        {"method": "other", "latents": {"7": {"up": [1, 2], "down": [1, 2]}}},
        {"latents": {"7": {"up": [float("nan"), 2], "down": [1, 2]}}},
        {"latents": {"7": {"up": [-1, 2], "down": [1, 2]}}},
        {"latents": {"7": {"up": "x"}, "x": {"up": [1, 2], "down": [1, 2]}}},
        {"latents": {}, "ordinary": ["x", float("nan")]},
    ],
)
def test_a_damaged_calibration_file_is_measured_again_not_trusted(tmp_path, damage):
    from sae.calibration import METHOD, CalibrationStore

    (tmp_path / "index").mkdir()
    path = tmp_path / "index" / "calibration.json"
    if isinstance(damage, str):
        path.write_text(damage)
    else:
        path.write_text(json.dumps({"method": METHOD, **damage}))
    store = CalibrationStore(tmp_path)
    assert store.entries == {} and store.ordinary is None


def test_presets_record_the_units_their_sliders_were_made_in(workspace):
    from sae import presets
    from sae.steer import Edit

    cat = _concept("cat")
    scale = workspace.calibration(cat).scale(workspace.unit(cat))
    made = workspace.preset([Edit(cat, "add", scale.amount(1.5), label="cat", scale=scale)])
    raw = made.to_json()
    read = presets.parse(json.dumps(raw))
    assert read.edits == made.edits and read.edits[0].scale == scale  # the amount replays as made
    assert read.edits[0].scale.position(read.edits[0].value) == pytest.approx(1.5)
    del raw["edits"][0]["scale"]  # a preset made before calibrated units
    assert presets.parse(json.dumps(raw)).edits[0].scale is None
    raw["edits"][0]["scale"] = {"up": -1, "down": "x", "top": 1, "bottom": 1}
    assert presets.parse(json.dumps(raw)).edits[0].scale is None  # ignored, not trusted


def test_sweep_writes_the_slider_at_each_position_clipped_to_its_range(workspace, tmp_path, capsys):
    from sae.cli import main

    cat = _concept("cat")
    scene = tmp_path / "scene.png"
    Image.open(sorted(SAMPLES.glob("*.png"))[0]).save(scene)
    out = tmp_path / "strip.png"
    args = [
        "sweep",
        str(scene),
        "--latent",
        str(cat),
        "--values",
        "-99",
        "0",
        "1",
        "99",
        "--sae",
        str(workspace.folder),
    ]
    assert main([*args, "--model", str(DEMO / "clip"), "--steps", "3", "--height", "64", "-o", str(out)]) == 0
    scale = workspace.calibration(cat).scale(workspace.unit(cat))
    said = capsys.readouterr().out
    assert f"-{scale.bottom:g}" in said and f"+{scale.top:g}" in said  # 99 units clipped to the range
    strip = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    panels = [strip[:64, i * 68 : i * 68 + 64] for i in range(4)]
    assert strip.shape[1] == 4 * 64 + 3 * 4
    assert np.abs(panels[3] - panels[1]).mean() > 1.0  # the far end paints something else than 0
    assert Scale.from_json(scale.to_json()) == scale
