"""Slider edits: an empty edit is the identity, bit for bit; edits move what they should."""

from __future__ import annotations

import pytest
import torch

from sae.backbone import load_backbone
from sae.errors import UserError
from sae.model import SparseAutoencoder
from sae.sae_config import SaeConfig, SaeMetadata
from sae.steer import Edit, edited_columns, steer_residual


@pytest.fixture
def split(tiny_clip):
    bb = load_backbone(str(tiny_clip), layer=6)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, bb.image_size, bb.image_size, generator=g)
    with torch.no_grad():
        resid = bb.prefix(x)[0]
    sae = SparseAutoencoder(SaeConfig(bb.width, 8 * bb.width, "topk", 6), SaeMetadata(layer=6))
    sae.initialize(resid, generator=g)
    sae.fold_input_scale()
    return bb, sae, resid


def test_empty_edit_gives_back_the_embedding_exactly(split):
    bb, sae, resid = split
    with torch.no_grad():
        code = sae.encode_sparse(resid)
        for edits in ([], [Edit(3, "add", 0.0)], [Edit(5, "scale", 1.0), Edit(9, "add", 0.0, mask=(0, 1))]):
            edited = steer_residual(resid, sae, code, edits)
            assert torch.equal(bb.suffix(edited[None]), bb.suffix(resid[None]))


def test_edit_moves_the_residual_along_the_decoder_row(split):
    _bb, sae, resid = split
    with torch.no_grad():
        code = sae.encode_sparse(resid)
        edited = steer_residual(resid, sae, code, [Edit(7, "add", 2.5)])
    assert torch.allclose(edited - resid, 2.5 * sae.W_dec[7].expand_as(resid), atol=1e-5)


def test_set_to_zero_removes_the_latents_contribution(split):
    _bb, sae, resid = split
    with torch.no_grad():
        code = sae.encode_sparse(resid)
        f = sae.encode(resid)
        latent = int(f.sum(0).argmax())
        edited = steer_residual(resid, sae, code, [Edit(latent, "set", 0.0)])
        assert torch.allclose(edited, resid - f[:, latent : latent + 1] * sae.W_dec[latent], atol=1e-5)


def test_mask_limits_the_edit_to_the_painted_patches(split):
    _bb, sae, resid = split
    with torch.no_grad():
        edited = steer_residual(resid, sae, sae.encode_sparse(resid), [Edit(2, "add", 1.0, mask=(0, 3))])
    changed = (edited - resid).abs().sum(1) > 0
    assert changed.tolist() == [i in (1, 4) for i in range(resid.shape[0])]


def test_edits_stack_in_order():
    code = torch.tensor([[0.0, 2.0], [0.0, 4.0]])
    ((old, new),) = edited_columns(code, [Edit(1, "scale", 0.5), Edit(1, "add", 1.0)], 2).values()
    assert new.tolist() == [2.0, 3.0] and old.tolist() == [2.0, 4.0]


def test_bad_edits_are_one_sentence(split):
    _bb, sae, resid = split
    with pytest.raises(UserError, match="Latent 99999 does not exist"):
        steer_residual(resid, sae, sae.encode_sparse(resid), [Edit(99999, "add", 1.0)])
    with pytest.raises(UserError, match="finite"):
        Edit(1, "add", float("nan"))
    with pytest.raises(UserError, match="mode 'boost'"):
        Edit(1, "boost", 1.0)


def test_tokens_choose_the_class_token_or_the_patches(split):
    _bb, sae, resid = split
    with torch.no_grad():
        code = sae.encode_sparse(resid)
        on = {
            t: ((steer_residual(resid, sae, code, [Edit(2, "add", 1.0, tokens=t)]) - resid).abs().sum(1) > 0).tolist()
            for t in ("all", "patches", "class")
        }
    n = resid.shape[0]
    assert on["all"] == [True] * n
    assert on["patches"] == [False] + [True] * (n - 1)
    assert on["class"] == [True] + [False] * (n - 1)
    with pytest.raises(UserError, match="class token"):
        Edit(2, "add", 1.0, mask=(0,), tokens="class")
    with pytest.raises(UserError, match="tokens 'cls'"):
        Edit(2, "add", 1.0, tokens="cls")


def test_an_sae_of_patches_edits_the_patch_a_mask_names(split):
    """An SAE trained on the patches alone codes tokens 1..P: a mask's patch p is still residual
    token 1 + p, and its edits never reach the class token."""
    bb, _sae, resid = split
    g = torch.Generator().manual_seed(1)
    sae = SparseAutoencoder(SaeConfig(bb.width, 8 * bb.width, "topk", 6), SaeMetadata(layer=6, token_set="patches"))
    sae.initialize(resid[1:], generator=g)
    positions = bb.token_positions("patches")
    with torch.no_grad():
        code = sae.encode_sparse(resid[positions])
        masked = steer_residual(resid, sae, code, [Edit(2, "add", 1.0, mask=(0, 3))], positions)
        everywhere = steer_residual(resid, sae, code, [Edit(2, "add", 1.0)], positions)
    assert ((masked - resid).abs().sum(1) > 0).tolist() == [i in (1, 4) for i in range(resid.shape[0])]
    assert ((everywhere - resid).abs().sum(1) > 0).tolist() == [i > 0 for i in range(resid.shape[0])]


def test_an_edit_on_tokens_the_sae_does_not_read_is_one_sentence(split):
    bb, _sae, resid = split
    sae = SparseAutoencoder(SaeConfig(bb.width, 8 * bb.width, "topk", 6), SaeMetadata(layer=6, token_set="cls"))
    sae.initialize(resid[:1], generator=torch.Generator().manual_seed(2))
    positions = bb.token_positions("cls")
    with torch.no_grad():
        code = sae.encode_sparse(resid[positions])
        assert not torch.equal(steer_residual(resid, sae, code, [Edit(2, "add", 1.0)], positions), resid)
        with pytest.raises(UserError, match="touches none of the tokens this SAE reads"):
            steer_residual(resid, sae, code, [Edit(2, "add", 1.0, tokens="patches")], positions)
