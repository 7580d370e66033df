"""Decoders end to end on tiny random instances of the real pipeline classes, saved in the hub's layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sae.decoders import DecodeCancelled, DecodeSettings
from sae.decoders.kandinsky import KandinskyDecoder
from sae.demo.decoder import save_pipeline, scheduler_config, movq_config, unet_config
from sae.errors import UserError


@pytest.fixture(scope="module")
def tiny_kandinsky(tmp_path_factory):
    from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("kandinsky") / "decoder"
    save_pipeline(folder, UNet2DConditionModel(**unet_config(24, quick=True)), VQModel(**movq_config(quick=True)),
                  DDIMScheduler(**scheduler_config()), torch.zeros(24))
    return folder


def test_text2img_and_img2img_run_from_the_saved_folder(tiny_kandinsky):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24), size=64)
    emb = torch.randn(1, 24, generator=torch.Generator().manual_seed(1))
    steps = []
    out = dec.decode(emb, None, DecodeSettings(steps=3, guidance=2.0, seed=0), on_step=lambda s, t: steps.append((s, t)))
    assert out.size == (64, 64) and steps[-1] == (3, 3)
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    edited = dec.decode(emb, init, DecodeSettings(steps=4, strength=0.5, seed=0))
    assert edited.size == (64, 64)


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_kandinsky):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24), size=64)
    emb = torch.randn(1, 24, generator=torch.Generator().manual_seed(1))
    a = np.asarray(dec.decode(emb, None, DecodeSettings(steps=3, seed=5)))
    b = np.asarray(dec.decode(emb, None, DecodeSettings(steps=3, seed=5)))
    c = np.asarray(dec.decode(emb, None, DecodeSettings(steps=3, seed=6)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cancel_from_the_progress_callback(tiny_kandinsky):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24), size=64)

    def stop(step, total):
        raise DecodeCancelled()

    with pytest.raises(DecodeCancelled):
        dec.decode(torch.zeros(1, 24), None, DecodeSettings(steps=3), on_step=stop)


def test_wrong_embedding_width_and_missing_folder_are_one_sentence(tiny_kandinsky, tmp_path):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24), size=64)
    with pytest.raises(UserError, match="takes 24-d image embeddings, not 1280-d"):
        dec.decode(torch.zeros(1, 1280), None, DecodeSettings(steps=2))
    with pytest.raises(UserError, match="Could not load the Kandinsky 2.2 decoder"):
        KandinskyDecoder(tmp_path / "nothing", torch.zeros(1, 24))
