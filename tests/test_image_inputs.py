"""The images people actually hand the program: every kind opens as RGB or gets one clear sentence."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sae.cli import main
from sae.errors import UserError
from sae.images import ALPHA, MAX_PIXELS, load_image, with_alpha

RED = (200, 30, 40)


def _save(im: Image.Image, path, **kw):
    im.save(path, **kw)
    return path


def _exif_rotated(path):
    """A 40x20 JPEG whose EXIF orientation (6) says: rotate 90 degrees clockwise to view."""
    im = Image.new("RGB", (40, 20), RED)
    im.paste((20, 200, 40), (0, 0, 10, 20))  # a green left edge, which ends up at the top
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(im, path, exif=exif.tobytes(), quality=95)


def _animated(path):
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 0, 255), (0, 255, 0))]
    return _save(frames[0], path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _sixteen_bit(path):
    a = np.full((12, 12), 40_000, np.uint16)
    return _save(Image.fromarray(a), path)


def _palette_with_transparency(path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([*RED, 0, 0, 0] + [0] * 762)
    im.info["transparency"] = 1
    im.putpixel((0, 0), 1)
    return _save(im, path, transparency=1)


KINDS = {
    "cmyk.jpg": (lambda p: _save(Image.new("CMYK", (10, 10), (0, 200, 200, 30)), p), (10, 10)),
    "sixteen-bit.png": (_sixteen_bit, (12, 12)),
    "alpha.png": (lambda p: _save(Image.new("RGBA", (9, 9), (*RED, 0)), p), (9, 9)),
    "palette.png": (_palette_with_transparency, (8, 8)),
    "gray.png": (lambda p: _save(Image.new("L", (7, 5), 90), p), (7, 5)),
    "gray-alpha.png": (lambda p: _save(Image.new("LA", (7, 5), (90, 255)), p), (7, 5)),
    "one-bit.bmp": (lambda p: _save(Image.new("1", (6, 6), 1), p), (6, 6)),
    "exif-rotated.jpg": (_exif_rotated, (20, 40)),
    "animated.gif": (_animated, (16, 16)),
    "tiny.png": (lambda p: _save(Image.new("RGB", (1, 1), RED), p), (1, 1)),
    "photo.webp": (lambda p: _save(Image.new("RGB", (30, 20), RED), p, lossless=True), (30, 20)),
    "猫 café.png": (lambda p: _save(Image.new("RGB", (5, 5), RED), p), (5, 5)),
    "float.tif": (lambda p: _save(Image.fromarray(np.full((4, 6), 0.5, np.float32)), p), (6, 4)),
    "sixteen-bit.tiff": (lambda p: _save(Image.fromarray(np.full((5, 3), 40_000, np.uint16)), p), (3, 5)),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_of_image_opens_as_rgb(tmp_path, name):
    make, size = KINDS[name]
    im = load_image(make(tmp_path / name))
    assert im.mode == "RGB" and im.size == size


def test_pixel_values_survive_the_conversions(tmp_path):
    assert load_image(_animated(tmp_path / "a.gif")).getpixel((8, 8)) == RED  # the first frame
    assert load_image(KINDS["alpha.png"][0](tmp_path / "a.png")).getpixel((4, 4)) == (255, 255, 255)  # over white
    assert load_image(_sixteen_bit(tmp_path / "s.png")).getpixel((3, 3)) == (156, 156, 156)  # 40000 / 256
    floats = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)  # fractions of white
    assert np.asarray(load_image(_save(Image.fromarray(floats), tmp_path / "f.tif")))[0, :, 0].tolist() == [
        0,
        128,
        255,
        0,
    ]
    assert load_image(_save(Image.fromarray(np.full((2, 2), 300.0, np.float32)), tmp_path / "g.tif")).getpixel(
        (0, 0)
    ) == (
        255,
        255,
        255,
    )
    rotated = load_image(_exif_rotated(tmp_path / "r.jpg"))
    assert rotated.getpixel((10, 2))[1] > 150 and rotated.getpixel((10, 37))[0] > 150  # green edge on top


def test_a_picture_keeps_its_transparency_only_when_it_has_some(tmp_path):
    for name in ("alpha.png", "palette.png"):  # clear everywhere; clear at one pixel
        im = load_image(KINDS[name][0](tmp_path / name))
        assert ALPHA in im.info and im.info[ALPHA].size == im.size
        back = with_alpha(im.resize((4, 4)), im)  # a result at another size gets it resized
        assert back.mode == "RGBA" and back.size == (4, 4)
    opaque = load_image(KINDS["gray-alpha.png"][0](tmp_path / "ga.png"))
    assert ALPHA not in opaque.info and with_alpha(opaque, opaque).mode == "RGB"


# Display P3 (phones' photos), a CC0 profile from github.com/saucecontrol/Compact-ICC-Profiles.
DISPLAY_P3 = (Path(__file__).parent / "data" / "DisplayP3-v4.icc").read_bytes()
# Linear Display P3 to linear sRGB; both share D65 white and the sRGB transfer curve.
P3_TO_SRGB = np.array([[1.2249, -0.2247, 0.0], [-0.0420, 1.0419, 0.0], [-0.0197, -0.0786, 1.0979]])


def _p3_in_srgb(raw: np.ndarray) -> np.ndarray:
    v = raw / 255.0
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4) @ P3_TO_SRGB.T
    linear = np.clip(linear, 0.0, 1.0)
    return 255.0 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("name", ["p3.jpg", "p3.png", "p3.webp", "p3.tif", "p3-alpha.png"])
def test_photos_in_display_p3_are_read_in_srgb(tmp_path, name):
    rng = np.random.default_rng(0)
    blocks = rng.integers(40, 216, (6, 8, 3), np.uint8).repeat(8, 0).repeat(8, 1)  # flat 8x8 blocks survive JPEG
    im = Image.fromarray(blocks)
    if "alpha" in name:
        im.putalpha(Image.fromarray(np.where(np.arange(64) < 32, 255, 0).astype(np.uint8)[None].repeat(48, 0)))
    path = _save(im, tmp_path / name, icc_profile=DISPLAY_P3, **({"quality": 100} if name.endswith(".jpg") else {}))
    with Image.open(path) as raw_file:
        raw = np.asarray(raw_file.convert("RGB"), np.float64)  # the stored values, no profile applied
    got = np.asarray(load_image(path), np.float64)
    opaque = np.s_[:, :32]
    assert np.abs(got[opaque] - _p3_in_srgb(raw[opaque])).max() <= 2
    assert np.abs(got[opaque] - raw[opaque]).max() >= 10  # the conversion is not a no-op on these colours
    if "alpha" in name:
        assert (got[:, 32:] == 255).all()  # transparent pixels still land on white


@pytest.mark.parametrize("profile", [b"not a colour profile", DISPLAY_P3[:100], None])
def test_a_broken_or_srgb_profile_leaves_the_pixels_as_stored(tmp_path, profile):
    from PIL import ImageCms

    profile = profile or ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (9, 13, 3), np.uint8))
    got = load_image(_save(im, tmp_path / "tagged.png", icc_profile=profile))
    assert np.array_equal(np.asarray(got), np.asarray(im))


def _pixel_bomb(path, side=60_000):
    """A valid 1x1 PNG whose header claims side x side pixels (a decompression bomb's first bytes)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", side, side)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def _truncated(path):
    _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), path)
    path.write_bytes(path.read_bytes()[:400])
    return path


def _written(path, data: bytes):
    path.write_bytes(data)
    return path


BAD = {
    "pixel bomb": (lambda p: _pixel_bomb(p / "bomb.png"), f"more than the {MAX_PIXELS:,}"),
    "truncated": (lambda p: _truncated(p / "cut.png"), "truncated or damaged"),
    "zero bytes": (lambda p: _written(p / "empty.png", b""), "empty"),
    "text named .png": (lambda p: _written(p / "notes.png", b"hello"), "not an image"),
    "missing": (lambda p: p / "nowhere.png", "does not exist"),
    "a folder": (lambda p: p, "not a file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_images_are_one_sentence(tmp_path, case):
    make, words = BAD[case]
    with pytest.raises(UserError, match=words) as e:
        load_image(make(tmp_path))
    assert str(e.value).count(". ") == 0 and "\n" not in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_one_sentence(tmp_path):
    p = _save(Image.new("RGB", (4, 4)), tmp_path / "locked.png")
    p.chmod(0)
    with pytest.raises(UserError, match="permission denied"):
        load_image(p)


@pytest.mark.parametrize("case", ["pixel bomb", "text named .png", "zero bytes"])
def test_the_cli_exits_non_zero_with_the_sentence(tmp_path, capsys, case):
    make, words = BAD[case]
    code = main(["features", "--image", str(make(tmp_path))])
    err = capsys.readouterr().err
    assert code != 0 and words.split()[0] in err and "Traceback" not in err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    head=st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"BM"]
    ),
    body=st.binary(max_size=300),
)
def test_any_bytes_open_or_give_a_user_error(tmp_path, head, body):
    p = tmp_path / "fuzz.png"
    p.write_bytes(head + body)
    try:
        im = load_image(p)
    except UserError:
        return
    assert im.mode == "RGB"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2000), fmt=st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP"]))
def test_any_prefix_of_a_real_image_opens_or_gives_a_user_error(tmp_path, cut, fmt):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(cut).integers(0, 255, (24, 24, 3), np.uint8)).save(buf, fmt)
    p = tmp_path / f"prefix.{fmt.lower()}"
    p.write_bytes(buf.getvalue()[:cut])
    try:
        im = load_image(p)
    except UserError:
        return
    assert im.mode == "RGB"
