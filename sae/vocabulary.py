"""Vocabularies for automatic labels: (label, prompt) pairs ranked through the CLIP text tower."""

from __future__ import annotations

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "gold")
STYLES = (
    "photo",
    "drawing",
    "painting",
    "cartoon",
    "sketch",
    "watercolor",
    "pixel art",
    "3d render",
    "black and white photo",
    "blurry photo",
    "close-up",
    "aerial view",
    "vintage photo",
    "neon light",
    "oil painting",
)
SCENES = (
    "beach",
    "forest",
    "desert",
    "city street",
    "snow",
    "night sky",
    "sunset",
    "underwater",
    "mountains",
    "kitchen",
    "bedroom",
    "office",
    "garden",
    "field of grass",
    "river",
    "lake",
    "ocean",
    "rain",
    "fog",
    "space",
)


def everyday_vocabulary() -> list[tuple[str, str]]:
    """A few thousand everyday concepts for real CLIP models: ImageNet's classes, colours, styles, scenes."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    out = [(c, f"a photo of a {c}") for c in IMAGENET_CLASSNAMES]
    out += [(f"{c}", f"a photo of something {c}") for c in COLOURS]
    out += [(s, f"a {s}") for s in STYLES]
    out += [(s, f"a photo of a {s}") for s in SCENES]
    seen, unique = set(), []
    for label, prompt in out:
        if label not in seen:
            seen.add(label)
            unique.append((label, prompt))
    return unique


def read_vocabulary(path: str) -> list[tuple[str, str]]:
    """A text file, one concept per line: ``label`` or ``label<TAB>prompt``."""
    from pathlib import Path

    from sae.errors import UserError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Vocabulary {path} cannot be read ({e}); give a UTF-8 text file, one concept per line.") from e
    out = []
    for line in lines:
        if line.strip() and not line.startswith("#"):
            label, _, prompt = line.partition("\t")
            out.append((label.strip(), prompt.strip() or f"a photo of a {label.strip()}"))
    if not out:
        raise UserError(f"Vocabulary {path} has no concepts; put one per line.")
    return out
