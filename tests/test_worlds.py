"""An encoder trained on a world of its own gets that world's scenes and vocabulary through
sae.worlds; an encoder whose world is not loaded is one sentence, never a silent fallback."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from sae import worlds
from sae.backbone import load_backbone
from sae.errors import UserError
from sae.induce import comparison_images
from sae.make import vocabulary_for
from sae.neutral import neutral_images, preview_canvas


def test_a_registered_world_supplies_scenes_and_vocabulary_and_an_unloaded_one_is_a_sentence(
    tiny_clip, tmp_path, monkeypatch
):
    folder = shutil.copytree(tiny_clip, tmp_path / "clip")
    (folder / worlds.MARKER).write_text(json.dumps({"world": "a test world"}))
    bb = load_backbone(str(folder))
    with pytest.raises(UserError, match="trained on 'a test world', whose scenes and vocabulary are not loaded"):
        neutral_images(bb)
    blank = Image.new("RGB", (32, 32), (1, 2, 3))
    monkeypatch.setitem(
        worlds._WORLDS,
        "a test world",
        worlds.World(
            "a test world", lambda: [("thing", "a picture of a thing")], lambda: [blank, blank], lambda n: [blank] * n
        ),
    )
    assert neutral_images(bb) == [blank, blank] and preview_canvas(bb) is blank
    assert vocabulary_for(bb) == [("thing", "a picture of a thing")]
    assert len(comparison_images(bb, None, [], n=3)) == 3
    plain = load_backbone(str(tiny_clip))  # no marker: the generic grey canvas and everyday vocabulary
    assert worlds.world_of(plain) is None and len(neutral_images(plain)) == 1
    assert len(vocabulary_for(plain)) > 1000
