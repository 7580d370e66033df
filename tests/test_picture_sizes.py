"""Pictures of any size and shape edit at their own size, on the shipped demo models and on tiny
Kandinsky 2.2 and SD 2.1 unCLIP pipelines of the real topology (pixel sides in multiples of 64):
the decoders' size policy, the encoder's view under the heatmap and the brush, the coverage line,
through the CLI and through the editor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import save_tiny_kandinsky, save_tiny_unclip
from PIL import Image
from PySide6.QtCore import QSettings

from sae.assets import DEMO, SAMPLES
from sae.cli import main
from sae.decoders.sizes import MAX_ASPECT, SizePolicy
from sae.demo.build import PHOTO_NOTE

SIZES = [(1, 1), (7, 5), (451, 300), (300, 451), (640, 427), (2000, 500), (1023, 767)]


def _photo(width: int, height: int, seed: int) -> Image.Image:
    """A photograph-like picture: smooth colour fields, a hard edge, sensor grain."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(cells).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    arr[:, : width // 3] *= 0.5  # a shadow with a straight edge
    arr += rng.normal(0, 8, arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[tuple[str, tuple[int, int]]]:
    """(path, the size it opens at): JPEGs and PNGs of every size in SIZES, a greyscale one, and
    one stored sideways with EXIF orientation 6 (it opens rotated, at 300x451)."""
    folder = tmp_path_factory.mktemp("photos")
    out = []
    for i, (w, h) in enumerate(SIZES):
        path = folder / f"photo-{w}x{h}.{'jpg' if i % 2 else 'png'}"
        _photo(w, h, i).save(path, quality=85) if i % 2 else _photo(w, h, i).save(path)
        out.append((str(path), (w, h)))
    _photo(333, 222, 50).convert("L").save(folder / "grey.png")
    out.append((str(folder / "grey.png"), (333, 222)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _photo(451, 300, 51).save(folder / "sideways.jpg", exif=exif, quality=90)
    out.append((str(folder / "sideways.jpg"), (300, 451)))
    return out


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict[str, str]:
    """The shipped demo decoder and tiny real-topology pipelines that paint the demo CLIP's embeddings."""
    from sae.backbone import load_backbone

    width = load_backbone(str(DEMO / "clip")).embed_dim
    root = tmp_path_factory.mktemp("decoders")
    return {
        "demo": "demo",
        "kandinsky": str(save_tiny_kandinsky(root / "kandinsky", width)),
        "unclip": str(save_tiny_unclip(root / "unclip", width)),
    }


def test_the_size_policy_keeps_aspect_and_area_and_rounds_to_the_multiple():
    rng = np.random.default_rng(0)
    for policy in (SizePolicy(64, 16), SizePolicy(512, 64), SizePolicy(768, 64)):
        for w, h in [*SIZES, (100, 1), (1, 100), *rng.integers(1, 5000, (40, 2)).tolist()]:
            canvas = policy.canvas(w, h)
            (ww, wh), (pw, ph) = canvas.working, canvas.padded
            assert ww % policy.multiple == 0 and wh % policy.multiple == 0 and ww > 0 and wh > 0
            assert 1 / MAX_ASPECT - 1e-9 <= pw / ph <= MAX_ASPECT + 1e-9
            assert canvas.is_padded == (max(w / h, h / w) > MAX_ASPECT)
            # the area is the native one within the rounding to the multiple
            assert abs(ww * wh - policy.native**2) <= policy.multiple * (ww + wh) / 2 + policy.multiple**2
            if min(ww, wh) > 2 * policy.multiple:  # the aspect is kept within the rounding
                assert abs(np.log((ww / wh) / (pw / ph))) < np.log(1 + 2 * policy.multiple / min(ww, wh))
            if w * h > 4_000_000:
                continue  # (the pixel round trip below is the same at any size; big ones only cost seconds)
            picture = Image.new("RGB", (w, h), (10, 20, 30))
            assert canvas.to_working(picture).size == (ww, wh)
            assert canvas.to_picture(Image.new("RGB", (ww, wh)), picture).size == (w, h)


def test_each_decoder_reads_its_size_policy_from_its_config(decoders):
    from sae.decoders.kandinsky import KandinskyDecoder
    from sae.decoders.registry import load_decoder
    from sae.decoders.unclip import UnclipDecoder

    assert load_decoder("demo", None).sizes == SizePolicy(64, 16)  # movq /4, UNet /4, 16 latent cells
    from sae.decoders import DECODERS

    assert SizePolicy(*DECODERS["demo"].sizes) == load_decoder("demo", None).sizes  # the table says what it paints
    assert KandinskyDecoder(decoders["kandinsky"], torch.zeros(1, 128)).sizes == SizePolicy(96, 64)
    assert UnclipDecoder(decoders["unclip"]).sizes == SizePolicy(96, 64)


@pytest.mark.parametrize("decoder", ["demo", "kandinsky", "unclip"])
def test_each_decoder_paints_the_working_canvas_itself_not_its_transpose(decoder, decoders, monkeypatch):
    """diffusers' Kandinsky 2.2 img2img hands (width, height) to a preprocess that takes (height,
    width): a landscape picture must still be painted landscape, before it is scaled back."""
    from sae.decoders import DecodeSettings, sizes
    from sae.decoders.registry import load_decoder
    from sae.demo.session import default_session

    painted = []
    to_picture = sizes.Canvas.to_picture
    monkeypatch.setattr(
        sizes.Canvas,
        "to_picture",
        lambda self, image, *a: painted.append((image.size, self.working)) or to_picture(self, image, *a),
    )
    backbone = default_session(decoder=False).backbone
    dec = load_decoder(decoders[decoder], backbone)
    emb, picture = torch.randn(1, backbone.embed_dim), _photo(451, 300, 9)
    for region, strength in (("edited", 0.5), ("whole", 0.5), ("whole", 1.0)):
        out = dec.decode(
            emb, picture, DecodeSettings(steps=2, strength=strength, region=region), source_embeds=torch.zeros_like(emb)
        )
        assert out.size == (451, 300)
    assert painted and all(size == working and size[0] > size[1] for size, working in painted)
    full = painted[-1][0]
    preview = dec.decode(emb, picture, DecodeSettings(steps=2, strength=0.5, region="whole", scale=0.5))
    small = painted[-1][0]  # a slow machine's drag preview: a smaller canvas, back at the picture's size
    assert preview.size == (451, 300) and small[0] * small[1] < full[0] * full[1]


@pytest.mark.parametrize("decoder", ["demo", "kandinsky", "unclip"])
def test_sae_studio_edit_keeps_every_picture_at_its_size(decoder, decoders, photos, tmp_path, capsys):
    paths = [p for p, _ in photos]
    code = main(["edit", *paths, "--add", "0=1.0", "--decoder", decoders[decoder], "--steps", "2", "-o", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and "RuntimeError" not in captured.err and "Skipped." not in captured.err
    for path, size in photos:
        stem = path.rsplit("/", 1)[1].rsplit(".", 1)[0]
        assert Image.open(tmp_path / f"{stem}.png").size == size, path
    assert "photo-1x1.png: The picture is 1x1, far smaller than the decoder paints" in captured.err


def test_a_picture_longer_than_the_limit_is_padded_and_comes_back_whole(tmp_path, capsys):
    _photo(1000, 10, 3).save(tmp_path / "strip.png")
    assert main(["edit", str(tmp_path / "strip.png"), "--add", "0=1.0", "-o", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "strip.png").size == (1000, 10)
    assert f"longer than {MAX_ASPECT:g}:1; the decoder paints it padded" in capsys.readouterr().err


def test_the_brush_on_a_landscape_picture_repaints_there_and_only_there():
    """The top-left patch of what the encoder reads (the centre square of a 96x64 picture) is
    brushed and edited: the result differs from the input under that patch, and everywhere
    beyond a latent cell or two around it the input's own pixels are kept exactly."""
    from sae.decoders import DecodeSettings
    from sae.demo.session import default_session
    from sae.steer import Edit

    session = default_session()
    scene = Image.open(SAMPLES / "house-at-night.png").convert("RGB")
    picture = Image.new("RGB", (96, 64))
    picture.paste(scene, (16, 0))
    picture.paste(scene.crop((0, 0, 16, 64)), (0, 0))
    picture.paste(scene.crop((48, 0, 64, 64)), (80, 0))
    session.set_image(picture)
    view = session.view()
    assert view.is_partial and view.box == (16.0, 0.0, 80.0, 64.0)
    assert view.patch_at(16, 0) == 0 and view.patch_at(15, 0) is None  # the crop's edge
    left, top, right, bottom = view.cell(0)
    latent = int(session.fires(1)[0].latent)
    edited = np.asarray(
        session.render([Edit(latent, "add", 40.0, (0,))], DecodeSettings(steps=8, strength=0.9)), dtype=np.int16
    )
    original = np.asarray(picture, dtype=np.int16)
    assert edited.shape == original.shape
    changed = np.abs(edited - original).sum(-1) > 0
    assert changed[int(top) : int(bottom), int(left) : int(right)].mean() > 0.5  # most of the patch is repainted
    # the region is the brushed patch's latent cells grown by one cell, blended over about one more
    # (a latent cell of the 80x48 canvas is 4.8 x 5.3 picture pixels)
    near = np.zeros_like(changed)
    near[: int(bottom) + 16, max(0, int(left) - 12) : int(right) + 12] = True
    assert changed[near].any() and not changed[~near].any()


def test_coverage_tells_a_world_scene_from_a_photograph(photos, capsys):
    scene = str(SAMPLES / "cat-on-grass.png")
    assert main(["features", "--image", scene, "--top", "3"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("coverage: "))
    assert "indexed pictures: " in line and PHOTO_NOTE not in out
    photo = next(p for p, size in photos if size == (451, 300))
    assert main(["features", "--image", photo, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert any(x.startswith("coverage: the SAE explains ") for x in out.splitlines())
    assert PHOTO_NOTE in out and "the encoder reads the centre 300x300 of this 451x300 picture" in out


@pytest.mark.parametrize("decoder", ["demo", "kandinsky", "unclip"])
def test_the_editor_edits_every_picture_at_its_size(decoder, decoders, qtbot, photos, tmp_path):
    from editor.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("first_run_done", True)
    window = MainWindow(settings=settings)  # the shipped demo models
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.model is not None, timeout=120_000)
    if decoder != "demo":
        window.switcher.choose_decoder(decoders[decoder])
        qtbot.waitUntil(lambda: window.decoder_name == decoders[decoder], timeout=60_000)
    window.generation.steps.setValue(2)
    for path, size in photos:
        window.result = None
        window.open_image(path)
        qtbot.waitUntil(
            lambda: not window.loading_image and window.result is not None and window.scheduler.wait(1), timeout=60_000
        )
        assert window.result.size == size and getattr(window, "_last_error", None) is None, path
        assert window.features.coverage.text().startswith("The SAE explains ")
        assert PHOTO_NOTE in window.features.coverage.text()  # photographs, to the cartoon-world demo
        view = window.canvas.view
        assert view.size == size and view.is_partial == (size[0] != size[1])
    # a slider edit on the last picture renders at its size too
    window.add_slider(window.model.session.fires(1)[0].latent)
    window.result = None
    window.sliders.rows[0].set_value(2.0)
    window.request_render(preview=False)
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=60_000)
    assert window.result.size == photos[-1][1] and getattr(window, "_last_error", None) is None
