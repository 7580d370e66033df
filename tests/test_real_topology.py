"""The real models' topology, narrowed (``sae.shapes``): ViT-bigG-14 (48 blocks, 16 heads, 1280-d
embedding) painting through the Kandinsky 2.2 decoder, and ViT-H-14 (32 blocks, 16 heads, 1024-d)
through SD 2.1 unCLIP, both decoders built from their real configs with every width divided,
through the same loaders and the whole edit path."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from sae.decoders import DecodeSettings
from sae.shapes import decoder_config, kandinsky_parts, save_clip, save_kandinsky, save_unclip, unclip_parts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bigg_kandinsky(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-topology")
    return save_clip("ViT-bigG-14", root / "bigg", factor=8), save_kandinsky(root / "kandinsky-2.2", factor=16)


def _session(clip, decoder, layer: int):
    """An edit session on a 16x SAE (random weights) at ``layer``, the recipe's middle layer."""
    from sae.backbone import load_backbone
    from sae.decoders.registry import load_decoder
    from sae.model import SparseAutoencoder
    from sae.sae_config import SaeConfig, SaeMetadata
    from sae.session import Session

    backbone = load_backbone(str(clip), layer=layer)
    sae = SparseAutoencoder(SaeConfig(d_in=backbone.width, d_sae=16 * backbone.width, k=32), SaeMetadata(layer=layer))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return Session(backbone, sae, load_decoder(str(decoder), backbone))


@pytest.fixture(scope="module")
def session(bigg_kandinsky):
    return _session(*bigg_kandinsky, layer=24)  # the middle of 48 blocks


@pytest.fixture(scope="module")
def unclip_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-topology-unclip")
    clip = save_clip("ViT-H-14", root / "h14", factor=16)
    return _session(clip, save_unclip(root / "sd-2.1-unclip", factor=16, latent_size=24), layer=16)  # 16 of 32


def test_real_topology_of_the_narrowed_encoder_and_decoder(session):
    real_clip = open_clip.get_model_config("ViT-bigG-14")
    bb = session.backbone
    assert bb.n_layers == real_clip["vision_cfg"]["layers"] == 48 and bb.embed_dim == real_clip["embed_dim"] == 1280
    assert bb.visual.transformer.resblocks[0].attn.num_heads == 1664 // 104  # its real 16 heads, narrower
    unet, real = session.decoder.text2img.unet.config, decoder_config("kandinsky-2.2", "unet")
    for key in ("down_block_types", "up_block_types", "mid_block_type", "layers_per_block", "encoder_hid_dim_type"):
        assert unet[key] == real[key] or list(unet[key]) == real[key], key
    heads = [c // unet["attention_head_dim"] for c in unet["block_out_channels"]]
    assert heads == [c // real["attention_head_dim"] for c in real["block_out_channels"]]  # 6, 12, 18, 24
    movq = session.decoder.text2img.movq.config
    assert list(movq["down_block_types"]) == decoder_config("kandinsky-2.2", "movq")["down_block_types"]
    assert kandinsky_parts(1)["unet"] == real  # factor 1 is the real config itself


@pytest.mark.parametrize("size", [(64, 64), (160, 96)])
def test_real_topology_kandinsky_edit_path(session, size):
    """set_image -> one slider edit on the middle-layer SAE -> decode, whole-picture img2img and a
    brushed region edit, at a square and a landscape size: each comes back at the picture's size,
    the edit changes the painting, and the region edit keeps the input beyond the brushed corner."""
    from sae.steer import Edit

    picture = _picture(size)
    session.set_image(picture)
    latent = session.fires(1)[0].latent
    whole = DecodeSettings(steps=2, strength=0.6, region="whole", decoder=session.decoder.name)
    plain = np.asarray(session.render([], whole), dtype=np.int16)
    edited = np.asarray(session.render([Edit(latent, "add", 20.0)], whole), dtype=np.int16)
    assert plain.shape == edited.shape == (size[1], size[0], 3)
    assert np.abs(edited - plain).mean() > 0.5

    region = whole.but(region="edited")
    brushed = np.asarray(session.render([Edit(latent, "add", 20.0, (0,))], region), dtype=np.int16)
    assert brushed.shape == (size[1], size[0], 3)
    changed = np.abs(brushed - np.asarray(picture, dtype=np.int16)).sum(-1) > 0
    left, top, right, bottom = session.view().cell(0)
    assert changed[int(top) : int(bottom) + 1, int(left) : int(right) + 1].any()  # the brushed patch repaints
    assert not changed[size[1] // 2 :, size[0] // 2 :].any()  # the far corner is the input's own pixels


def _picture(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_real_topology_of_vit_h_and_sd21_unclip(unclip_session):
    bb = unclip_session.backbone
    assert bb.n_layers == 32 and bb.embed_dim == 1024 and bb.visual.transformer.resblocks[0].attn.num_heads == 16
    pipe, real = unclip_session.decoder.pipe, decoder_config("sd-2.1-unclip", "unet")
    kept = ("down_block_types", "up_block_types", "attention_head_dim", "class_embed_type", "use_linear_projection")
    for key in kept:
        assert pipe.unet.config[key] == real[key] or list(pipe.unet.config[key]) == real[key], key
    assert pipe.unet.config["projection_class_embeddings_input_dim"] == 2 * 1024
    assert pipe.text_encoder.config.num_hidden_layers == 23 and pipe.unet.config["cross_attention_dim"] == 64
    assert list(pipe.vae.config["down_block_types"]) == decoder_config("sd-2.1-unclip", "vae")["down_block_types"]
    full = unclip_parts(1)
    assert full["unet"] == real and full["text_encoder"]["hidden_size"] == real["cross_attention_dim"]


@pytest.mark.parametrize("size", [(64, 64), (160, 96)])
def test_real_topology_unclip_edit_path(unclip_session, size):
    """set_image -> one slider edit -> SD 2.1 unCLIP's img2img, square and landscape: the picture
    keeps its size and the edit changes the painting (same seed)."""
    from sae.steer import Edit

    unclip_session.set_image(_picture(size))
    latent = unclip_session.fires(1)[0].latent
    settings = DecodeSettings(steps=2, strength=0.6, decoder=unclip_session.decoder.name)
    plain = np.asarray(unclip_session.render([], settings), dtype=np.int16)
    edited = np.asarray(unclip_session.render([Edit(latent, "add", 20.0)], settings), dtype=np.int16)
    assert plain.shape == edited.shape == (size[1], size[0], 3)
    assert np.abs(edited - plain).mean() > 0.5
