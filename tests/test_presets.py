"""Presets: round trip, and one clear sentence for every kind of bad preset."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sae import presets
from sae.decoders import DecodeSettings
from sae.errors import UserError
from sae.presets import Preset, SaeIdentity
from sae.steer import Edit

SHA = "ab" * 32


def _preset(**kw) -> Preset:
    return Preset(
        SaeIdentity(SHA, 64, 16, "tiny", 3),
        [Edit(5, "add", 2.0, None, "cat"), Edit(7, "set", 0.0, (1, 2), "hat")],
        DecodeSettings(seed=4),
        **kw,
    )


def test_round_trip(tmp_path):
    p = _preset()
    p.save(tmp_path / "p.json")
    back = presets.load(tmp_path / "p.json")
    assert back.edits == p.edits and back.sae == p.sae and back.decoder == p.decoder
    assert [e.label for e in back.edits] == ["cat", "hat"]


def test_a_preset_made_before_edit_regions_replays_over_the_whole_image():
    d = _preset().to_json()
    assert d["version"] == 3 and d["decoder"]["region"] == "edited"
    assert presets.parse(json.dumps(d)).decoder.region == "edited"
    del d["decoder"]["region"]
    d["version"] = 1
    assert presets.parse(json.dumps(d)).decoder.region == "whole"
    whole = _preset()
    whole.decoder.region = "whole"
    assert whole.to_json()["version"] == 1  # nothing a version 1 reader would replay differently


def test_presets_keep_which_tokens_an_edit_touches():
    p = _preset()
    p.edits.append(Edit(9, "add", 1.5, None, "sun", tokens="patches"))
    d = p.to_json()
    assert d["version"] == 4 and d["edits"][2]["tokens"] == "patches" and "tokens" not in d["edits"][0]
    back = presets.parse(json.dumps(d))
    assert back.edits == p.edits and back.edits[0].tokens == "all"  # an edit without the key: every token
    d["edits"][1]["tokens"] = "class"  # and a mask of patches
    with pytest.raises(UserError, match="edit 1 is on the class token and has a mask"):
        presets.parse(json.dumps(d))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=99), "newer sae-studio"),
        (lambda d: d.update(format="other"), "not a valid preset"),
        (lambda d: d["edits"][0].update(value="big"), "not a valid preset: at edits/0/value"),
        (lambda d: d["edits"][0].update(latent=64), "names latent 64, but its SAE has 64"),
        (lambda d: d["edits"][0].update(value=1e9), "outside the allowed"),
        (lambda d: d["edits"][0].update(mode="boost"), "edits/0/mode"),
        (lambda d: d.update(edits=[d["edits"][0]] * 1000), "edits"),
        (lambda d: d["sae"].update(sha256="zz"), "sae/sha256"),
        (lambda d: d["decoder"].update(region="everywhere"), "decoder/region"),
        (lambda d: d["edits"][0].update(tokens="cls"), "edits/0/tokens"),
    ],
)
def test_bad_presets_are_refused_with_one_sentence(mutate, message):
    d = _preset().to_json()
    mutate(d)
    with pytest.raises(UserError, match=message):
        presets.parse(json.dumps(d))


def test_nan_infinity_truncation_and_deep_nesting_are_refused():
    text = json.dumps(_preset().to_json()).replace('"value": 2.0', '"value": NaN')
    with pytest.raises(UserError, match="not valid JSON"):
        presets.parse(text)
    with pytest.raises(UserError, match="not valid JSON"):
        presets.parse(json.dumps(_preset().to_json())[:-20])
    with pytest.raises(UserError, match="not valid JSON"):  # json's parser recurses: a RecursionError, caught
        presets.parse('{"edits": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_preset_for_another_sae_names_both():
    with pytest.raises(
        UserError, match=r"made for another SAE \(64 latents on tiny, layer 3.*not the loaded one \(128"
    ):
        presets.check_for(_preset(), "cd" * 32, 128)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_parser_never_fails_other_than_with_a_user_error(value):
    try:
        text = json.dumps(value)
    except ValueError:
        return
    try:
        presets.parse(text)
    except UserError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_user_error(data):
    with pytest.raises(UserError):
        presets.parse(data)
