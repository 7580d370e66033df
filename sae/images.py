"""Finding and opening the images people hand the program, with one clear sentence when they can't be used."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from sae.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Refuse images above this many pixels before decoding them (a 16k x 16k photo is 268M).
MAX_PIXELS = 100_000_000


def find_images(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted by relative path so runs are repeatable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"Image folder {folder} does not exist or is not a folder.")
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    ]
    if not found:
        raise UserError(
            f"No images in {folder}; put {', '.join(IMAGE_SUFFIXES[:-1])} or {IMAGE_SUFFIXES[-1]} files there "
            "(sub-folders are searched too)."
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _float_to_grey(im: Image.Image) -> Image.Image:
    """A floating-point image (scientific TIFFs) as 8-bit grey: values within 0..1 are read as
    fractions of white, others as 0..255; NaN is black."""
    a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    if a.size and a.max() <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _to_srgb(im: Image.Image) -> Image.Image:
    """The pixels of an image with an embedded colour profile (Display P3 from phones, Adobe RGB
    from cameras, CMYK from print) in sRGB, the space the encoders learned from. A profile that
    is already sRGB, unreadable or for another kind of image leaves the pixels as they are."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(source).strip().startswith("sRGB"):
            return im
        mode = "RGBA" if im.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im


ALPHA = "sae-studio alpha"  # where a loaded picture keeps its transparency (``with_alpha``)


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``path`` as an sRGB image: first frame, EXIF rotation applied, embedded colour
    profile converted, alpha over white (and kept in ``info[ALPHA]`` when any pixel is transparent).

    Raises UserError with one sentence for files that are missing, unreadable, not images,
    truncated, or larger than ``max_pixels`` (checked from the header, before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file.")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path} cannot be read (permission denied).")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes), so it is not an image.")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise UserError(
                    f"{path} is {w}x{h} pixels, more than the {max_pixels:,} sae-studio opens; scale it down first."
                )
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
            elif im.mode == "I;16" or im.mode.startswith("I"):
                im = im.point(lambda v: v / 256).convert("L")
            elif im.mode == "F":
                im = _float_to_grey(im)
            elif im.mode == "P":
                im = im.convert("RGB")
            im = _to_srgb(im)
            alpha = im.getchannel("A") if im.mode == "RGBA" else None
            if alpha is not None:
                im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
            out = im.convert("RGB")
            if alpha is not None and alpha.getextrema()[0] < 255:  # some of it is transparent
                out.info[ALPHA] = alpha
            return out
    except UserError:
        raise
    except UnidentifiedImageError as e:
        raise UserError(f"{path} is not an image sae-studio can read (unknown or damaged format).") from e
    except Image.DecompressionBombError as e:  # Pillow's own check, on headers far above its limit
        raise UserError(
            f"{path} claims more than the {max_pixels:,} pixels sae-studio opens; scale it down first."
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path} could not be decoded ({e}); the file may be truncated or damaged.") from e


def with_alpha(result: Image.Image, source: Image.Image) -> Image.Image:
    """``result`` (an edit of ``source``) given back ``source``'s transparency, if it had any: the
    models paint over white, and a cut-out stays a cut-out."""
    alpha = source.info.get(ALPHA)
    if alpha is None:
        return result
    if alpha.size != result.size:
        alpha = alpha.resize(result.size, Image.Resampling.LANCZOS)
    out = result.convert("RGBA")
    out.putalpha(alpha)
    return out
