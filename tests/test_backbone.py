"""The split encoder: prefix then suffix is open_clip's encode_image, at every layer."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
from helpers import save_tiny_clip

from sae.backbone import BackboneSpec, load_backbone, save_local_dir
from sae.errors import UserError


@pytest.mark.parametrize("name", ["ViT-B-16", "ViT-H-14", "ViT-bigG-14"])
def test_suffix_of_prefix_equals_encode_image_at_every_layer(tmp_path, name):
    folder = save_tiny_clip(name, tmp_path / name)
    bb = load_backbone(str(folder))
    real = open_clip.get_model_config(name)["vision_cfg"]
    assert bb.n_layers == real["layers"]
    x = torch.randn(3, 3, bb.image_size, bb.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = bb.encode_image(x)
        for layer in range(bb.n_layers + 1):
            split = bb.at_layer(layer)
            resid = split.prefix(x)
            assert resid.shape == (3, bb.n_tokens, bb.width)
            assert torch.allclose(split.suffix(resid), reference, atol=1e-5, rtol=0), layer
        for layer in range(bb.n_layers):  # split after a block's attention or MLP output joined the residual
            for site in ("attn_out", "mlp_out"):
                resid, out = bb.at_layer(layer, site).split(x)
                assert torch.allclose(bb.at_layer(layer, site).suffix(resid), reference, atol=1e-5, rtol=0)
                assert out.shape == resid.shape and not torch.allclose(out, resid)


def test_prefix_stops_at_the_layer(tiny_clip):
    """The residual at layer L differs from the one at L+1: prefix runs exactly L blocks."""
    bb = load_backbone(str(tiny_clip), layer=3)
    x = torch.randn(2, 3, bb.image_size, bb.image_size)
    with torch.no_grad():
        r3 = bb.prefix(x)
        r4 = bb.at_layer(4).prefix(x)
        manual = bb.visual.transformer.resblocks[3](r3)
    assert torch.allclose(manual, r4, atol=1e-6)
    assert not torch.allclose(r3, r4)


def test_default_layer_is_the_middle_and_text_tower_works(tiny_clip):
    bb = load_backbone(f"local-dir:{tiny_clip}")
    assert bb.layer == bb.n_layers // 2
    assert not bb.tokenizer.built  # loading for image edits leaves the tokenizer to the first text
    with torch.no_grad():
        t = bb.encode_text(["a cat", "a cowboy hat"])
    assert bb.tokenizer.built
    assert t.shape == (2, bb.embed_dim)
    assert not torch.allclose(t[0], t[1])


def test_layer_out_of_range_is_one_clear_sentence(tiny_clip):
    with pytest.raises(UserError, match="Layer 99 does not exist.*12 blocks"):
        load_backbone(str(tiny_clip), layer=99)


def test_folder_with_only_a_pickle_is_refused_unread(tmp_path, tiny_clip):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((tiny_clip / "open_clip_config.json").read_text())
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(UserError, match="never unpickles"):
        load_backbone(str(folder))


def test_non_vit_tower_is_refused_naming_the_model(tmp_path):
    cfg = copy.deepcopy(open_clip.get_model_config("RN50"))
    cfg["vision_cfg"].update(layers=[1, 1, 1, 1], width=8, image_size=64)
    cfg["text_cfg"].update(width=32, heads=2, layers=1)
    cfg["embed_dim"] = 16
    folder = save_local_dir(open_clip.CLIP(**cfg), cfg, tmp_path / "rn")
    with pytest.raises(UserError, match=r"ModifiedResNet image tower.*ViT"):
        load_backbone(str(folder))


def test_unknown_tag_is_one_clear_sentence():
    with pytest.raises(UserError, match="Could not load model ViT-B-16:no-such-tag"):
        load_backbone("ViT-B-16:no-such-tag")


def test_spec_parsing():
    assert BackboneSpec.parse("ViT-bigG-14:laion2b_s39b_b160k") == BackboneSpec("ViT-bigG-14", "laion2b_s39b_b160k")
    assert BackboneSpec.parse("local-dir:/x/y").local_dir.as_posix() == "/x/y"


@pytest.mark.parametrize("site", ["attn_out", "mlp_out"])
def test_a_sublayer_sae_edit_is_added_where_that_output_joins_the_residual(tiny_clip, site):
    """Reference: open_clip's own forward with a hook that edits block 4's attention (``ls_1``) or MLP
    (``ls_2``) output through the SAE; the session's split edit must give the same embedding."""
    from PIL import Image

    from sae.model import SparseAutoencoder
    from sae.sae_config import SaeConfig, SaeMetadata
    from sae.session import Session
    from sae.steer import Edit, steer_residual

    bb = load_backbone(str(tiny_clip), layer=4, site=site)
    assert bb.where == f"the {'attention' if site == 'attn_out' else 'MLP'} output of block 4"
    g = torch.Generator().manual_seed(3)
    sae = SparseAutoencoder(SaeConfig(d_in=bb.width, d_sae=64, arch="relu"), SaeMetadata(layer=4, site=site))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    image = Image.fromarray((torch.rand(40, 48, 3, generator=g) * 255).byte().numpy())
    edits = [Edit(5, "add", 4.0), Edit(9, "scale", 0.0)]
    session = Session(load_backbone(str(tiny_clip), layer=4), sae)  # split at the SAE's own site
    assert session.backbone.site == site
    session.set_image(image)

    def edit_output(_module, _inputs, out):
        o = out if bb.visual.transformer.batch_first else out.transpose(0, 1)
        code = sae.encode(o[0])
        o = steer_residual(o[0], sae, code, edits)[None]
        return o if bb.visual.transformer.batch_first else o.transpose(0, 1)

    block = bb.visual.transformer.resblocks[4]
    handle = (block.ls_1 if site == "attn_out" else block.ls_2).register_forward_hook(edit_output)
    try:
        with torch.no_grad():
            reference = bb.model.encode_image(bb.preprocess(image)[None])[0]
    finally:
        handle.remove()
    with torch.no_grad():
        ours = session.embedding(edits)
    assert not torch.allclose(ours, session.current.embedding, atol=1e-3)
    assert torch.allclose(ours, reference, atol=1e-4), (ours - reference).abs().max()
