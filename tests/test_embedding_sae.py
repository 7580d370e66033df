"""SAEs on the final image embedding (hook point "embedding"): extract, train, load in SAELens,
steer, and drive a Kandinsky-shaped decoder, through the same code as layer-L SAEs."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_cli
from PIL import Image

from sae.backbone import EMBEDDING, load_backbone, parse_layer
from sae.errors import UserError
from sae.model import SparseAutoencoder
from sae.session import Session
from sae.steer import Edit


@pytest.fixture(scope="module")
def embedding_sae(tiny_clip, tmp_path_factory):
    from helpers import write_images

    root = tmp_path_factory.mktemp("emb")
    images = write_images(root / "images", 40)
    r = run_cli("extract", "--model", tiny_clip, "--images", images, "--out", root / "acts", "--layer", "embedding")
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "train",
        "--acts",
        root / "acts",
        "--out",
        root / "sae",
        "--expansion",
        "4",
        "--k",
        "4",
        "--tokens",
        "8000",
        "--batch-size",
        "16",
    )
    assert r.returncode == 0, r.stderr
    return root, images


def test_layer_words():
    assert parse_layer("embedding") == EMBEDDING and parse_layer("7") == 7 and parse_layer(None) is None
    with pytest.raises(UserError, match="neither a block number nor 'embedding'"):
        parse_layer("middle")


def test_extracted_rows_are_the_image_embeddings(embedding_sae, tiny_clip):
    root, images = embedding_sae
    manifest = json.loads((root / "acts" / "manifest.json").read_text())
    bb = load_backbone(str(tiny_clip), EMBEDDING)
    assert manifest["layer"] == EMBEDDING and manifest["d"] == bb.embed_dim and manifest["tokens_per_image"] == 1
    sae = SparseAutoencoder.load(root / "sae")
    assert sae.metadata.layer == EMBEDDING and sae.d_in == bb.embed_dim
    assert json.loads((root / "sae" / "cfg.json").read_text())["metadata"]["hook_name"] == "embedding"


def test_saelens_reads_the_embedding_sae(embedding_sae):
    sae_lens = pytest.importorskip("sae_lens")
    root, _ = embedding_sae
    ours = SparseAutoencoder.load(root / "sae")
    theirs = sae_lens.SAE.load_from_disk(str(root / "sae"))
    x = torch.randn(10, ours.d_in)
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), ours.encode(x), atol=1e-5)


def test_session_edits_the_embedding_directly_and_drives_a_kandinsky_decoder(embedding_sae, tiny_clip, tmp_path):
    from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel

    from sae.decoders import DecodeSettings
    from sae.decoders.registry import load_decoder
    from sae.demo.decoder import movq_config, save_pipeline, scheduler_config, unet_config

    root, images = embedding_sae
    sae = SparseAutoencoder.load(root / "sae")
    bb = load_backbone(str(tiny_clip))  # the session moves it to the SAE's split point
    torch.manual_seed(0)
    save_pipeline(
        tmp_path / "dec",
        UNet2DConditionModel(**unet_config(bb.embed_dim, quick=True)),
        VQModel(**movq_config(quick=True)),
        DDIMScheduler(**scheduler_config()),
        torch.zeros(bb.embed_dim),
    )
    s = Session(bb, sae, load_decoder(str(tmp_path / "dec"), bb))
    assert s.backbone.is_embedding
    image = Image.open(next(images.rglob("*.png")))
    s.set_image(image)
    with torch.no_grad():
        reference = bb.encode_image(bb.preprocess(image.convert("RGB"))[None])[0]
    assert torch.equal(s.embedding([]), s.current.embedding)
    assert torch.allclose(s.embedding([]), reference, atol=1e-6)
    latent = s.fires(1)[0].latent
    edited = s.embedding([Edit(latent, "add", 2.0)])
    assert torch.allclose(edited - s.current.embedding, 2.0 * sae.W_dec[latent], atol=1e-5)  # x' = x + W_dec^T (f' - f)
    out = s.render([Edit(latent, "add", 2.0)], DecodeSettings(steps=3, seed=0))
    assert out.size == (32, 32)
    assert s.heatmap(latent).numel() == 0
    with pytest.raises(UserError, match="cannot be limited to a region"):
        s.embedding([Edit(latent, "add", 1.0, mask=(0, 1))])


def test_an_saelens_embedding_sae_of_another_tool_opens_at_the_embedding(tmp_path):
    pytest.importorskip("sae_lens")
    from sae_lens import TopKSAE, TopKSAEConfig

    cfg = TopKSAEConfig(d_in=24, d_sae=96, k=4)
    cfg.metadata.hook_name = "image_embeds"
    TopKSAE(cfg).save_model(tmp_path / "k22")
    assert SparseAutoencoder.load(tmp_path / "k22").metadata.layer == EMBEDDING
