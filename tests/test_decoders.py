"""Decoders end to end on tiny random instances of the real pipeline classes, saved in the hub's layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel
from PIL import Image
from safetensors.torch import load_file

from sae.decoders import DecodeCancelled, DecodeSettings
from sae.decoders.kandinsky import KandinskyDecoder
from sae.demo.decoder import movq_config, save_pipeline, scheduler_config, unet_config
from sae.errors import UserError


@pytest.fixture(scope="module")
def tiny_kandinsky(tmp_path_factory):

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("kandinsky") / "decoder"
    save_pipeline(
        folder,
        UNet2DConditionModel(**unet_config(24, quick=True)),
        VQModel(**movq_config(quick=True)),
        DDIMScheduler(**scheduler_config()),
        torch.zeros(24),
    )
    return folder


def test_text2img_and_img2img_run_from_the_saved_folder(tiny_kandinsky):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24))
    emb = torch.randn(1, 24, generator=torch.Generator().manual_seed(1))
    steps = []
    out = dec.decode(
        emb, None, DecodeSettings(steps=3, guidance=2.0, seed=0), on_step=lambda s, t: steps.append((s, t))
    )
    assert out.size == (64, 64) and steps[-1] == (3, 3)
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    edited = dec.decode(emb, init, DecodeSettings(steps=4, strength=0.5, seed=0))
    assert edited.size == (64, 64)


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_kandinsky):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24))
    emb = torch.randn(1, 24, generator=torch.Generator().manual_seed(1))
    a = np.asarray(dec.decode(emb, None, DecodeSettings(steps=3, seed=5)))
    b = np.asarray(dec.decode(emb, None, DecodeSettings(steps=3, seed=5)))
    c = np.asarray(dec.decode(emb, None, DecodeSettings(steps=3, seed=6)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_img2img_encodes_an_unchanged_init_image_once_and_paints_the_same(tiny_kandinsky):
    """Slider moves re-run img2img on one image: the movq encodes it once; results are unchanged."""
    dec, fresh = (KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24)) for _ in range(2))
    encodes = []
    dec.img2img.movq.encoder.register_forward_hook(lambda *a: encodes.append(1))
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    other = Image.new("RGB", (64, 64), (10, 200, 30))
    settings = DecodeSettings(steps=4, strength=0.5, seed=3)
    for i, im in enumerate((init, init, init, other, init)):
        emb = torch.full((1, 24), 0.1 * i)
        assert np.array_equal(np.asarray(dec.decode(emb, im, settings)), np.asarray(fresh.decode(emb, im, settings)))
    assert len(encodes) == 3  # init, other, init again: a changed image is always encoded afresh


def test_an_edit_region_keeps_the_input_latents_outside_it(tiny_kandinsky):
    """Through diffusers' own img2img loop: after the last step the latents outside the region are
    exactly the input's, inside they are repainted; an empty edit has an empty region and decodes
    to the autoencoder's reconstruction of the input."""
    from sae.decoders.region import EditRegion, KeepOutside

    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24))
    pipe = dec.img2img
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    source = torch.randn(1, 24, generator=torch.Generator().manual_seed(1))
    edited = source + 3 * torch.randn(1, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        latents = pipe.movq.encode(pipe.image_processor.preprocess(init, 64, 64))["latents"]
        find = EditRegion()
        region = find(pipe.unet, pipe.scheduler, latents, edited, source, steps=4, seed=0)
        assert not find(pipe.unet, pipe.scheduler, latents, source, source, steps=4, seed=0).any()
        assert torch.equal(find(pipe.unet, pipe.scheduler, latents, edited, source, steps=4, seed=0), region)
        other = source + 3 * torch.randn(1, 24, generator=torch.Generator().manual_seed(3))
        # the remembered unedited predictions serve only the same input: another source is predicted afresh
        assert torch.equal(
            find(pipe.unet, pipe.scheduler, latents, edited, other, steps=4, seed=0),
            EditRegion()(pipe.unet, pipe.scheduler, latents, edited, other, steps=4, seed=0),
        )
    assert 0 < region.mean() < 1 and region.shape == (1, 1, *latents.shape[-2:])
    out = pipe(
        image=init,
        image_embeds=edited,
        negative_image_embeds=dec.negative_embeds,
        strength=0.9,
        num_inference_steps=4,
        height=64,
        width=64,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=KeepOutside(region, latents, seed=0),
    ).images
    outside, inside = (region == 0).expand_as(latents), (region == 1).expand_as(latents)
    assert torch.equal(out[outside], latents[outside])
    assert not torch.allclose(out[inside], latents[inside], atol=1e-2)

    settings = DecodeSettings(steps=4, strength=0.9, seed=0)
    steps = []
    same = np.asarray(
        dec.decode(source, init, settings, on_step=lambda s, t: steps.append((s, t)), source_embeds=source)
    )
    with torch.no_grad():
        redrawn = pipe.image_processor.postprocess(pipe.movq.decode(latents, force_not_quantize=True)["sample"], "np")[
            0
        ]
    assert np.array_equal(same, np.asarray(pipe.image_processor.numpy_to_pil(redrawn[None])[0])) and steps == [(1, 1)]
    whole = np.asarray(
        dec.decode(source, init, DecodeSettings(steps=4, strength=0.9, seed=0, region="whole"), source_embeds=source)
    )
    assert not np.array_equal(whole, same)  # the whole image repainted, as before regions


def test_cancel_from_the_progress_callback(tiny_kandinsky):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24))

    def stop(step, total):
        raise DecodeCancelled()

    with pytest.raises(DecodeCancelled):
        dec.decode(torch.zeros(1, 24), None, DecodeSettings(steps=3), on_step=stop)


def test_wrong_embedding_width_and_missing_folder_are_one_sentence(tiny_kandinsky, tmp_path):
    dec = KandinskyDecoder(tiny_kandinsky, torch.zeros(1, 24))
    with pytest.raises(UserError, match="takes 24-d image embeddings, not 1280-d"):
        dec.decode(torch.zeros(1, 1280), None, DecodeSettings(steps=2))
    with pytest.raises(UserError, match="Could not load the Kandinsky 2.2 decoder"):
        KandinskyDecoder(tmp_path / "nothing", torch.zeros(1, 24))


def test_a_hub_decoder_for_the_wrong_encoder_is_refused_before_any_download(tmp_path, monkeypatch):
    from helpers import save_tiny_clip

    from sae.backbone import load_backbone
    from sae.decoders.registry import load_decoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bb = load_backbone(str(save_tiny_clip("ViT-B-32", tmp_path / "clip")))
    for name, width in (("kandinsky-2.2", 1280), ("sd21-unclip", 1024)):
        with pytest.raises(UserError, match=f"paints {width}-d .* makes {bb.embed_dim}-d"):
            load_decoder(name, bb)


def test_a_plan_the_free_memory_cannot_hold_is_refused_before_any_download_naming_one_that_fits(monkeypatch):
    """The Kandinsky 2.2 pair's plans (fp32 17.9 GB measured at full size, fp16 ~14 GB made from its
    measured parts) against the memory free beside the loaded encoder; no download starts."""
    import open_clip
    from helpers import tiny_clip_config

    from sae.backbone import Backbone
    from sae.decoders.registry import load_decoder

    cfg = tiny_clip_config("ViT-B-16")
    cfg["embed_dim"] = 1280  # paints as ViT-bigG-14's embedding does
    bb = Backbone(open_clip.CLIP(**cfg), "tiny-1280", 3)

    def no_download(*args, **kwargs):
        raise AssertionError("a download started")

    monkeypatch.setattr("sae.download.hub_snapshot", no_download)
    for free, says in (  # a CPU runs the fp32 plan only
        (12.0, r"needs about 17\.9 GB more in the fp32 plan, but cpu has 12\.0 GB free; no plan of it fits"),
        (4.0, "no plan of it fits"),
    ):
        monkeypatch.setattr("sae.recipes.free_memory_gb", lambda device, free=free: free)
        with pytest.raises(UserError, match=says):
            load_decoder("kandinsky-2.2", bb)
    from sae.recipes import check_memory

    # the encoder stays fp32 on the GPU in every plan (10.2 GB for ViT-bigG-14): a 6 GB GPU holds
    # no plan, and beside an encoder already there, only what the decoder adds is needed
    monkeypatch.setattr("sae.recipes.free_memory_gb", lambda device: 6.0)
    with pytest.raises(UserError, match="no plan of it fits"):
        check_memory("kandinsky-2.2", "cuda", fp16=True, cpu_offload=True, loaded_gb=0.0)
    check_memory("kandinsky-2.2", "cuda", fp16=True, cpu_offload=False, loaded_gb=10.2)
    monkeypatch.setattr("sae.recipes.free_memory_gb", lambda device: 15.0)
    with pytest.raises(UserError, match=r"17\.9 GB more in the fp32 plan.*the fp16 plan fits \(--fp16\)"):
        check_memory("kandinsky-2.2", "cuda", fp16=False, cpu_offload=False, loaded_gb=0.0)
    monkeypatch.setattr("sae.recipes.free_memory_gb", lambda device: 7.5)  # unCLIP: offloading fits
    with pytest.raises(UserError, match=r"the fp16 \+ CPU offload plan fits \(--fp16 --cpu-offload\)"):
        check_memory("sd21-unclip", "cuda", fp16=True, cpu_offload=False, loaded_gb=0.0)


@pytest.fixture(scope="module")
def tiny_unclip(tmp_path_factory):
    from helpers import save_tiny_unclip

    return save_tiny_unclip(tmp_path_factory.mktemp("unclip") / "pipe", 32)


def test_unclip_decodes_an_embedding_from_the_saved_folder(tiny_unclip):
    from sae.decoders.unclip import UnclipDecoder

    dec = UnclipDecoder(tiny_unclip)
    emb = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    a = np.asarray(dec.decode(emb, None, DecodeSettings(steps=2, guidance=1.0, seed=1)))
    b = np.asarray(dec.decode(emb, None, DecodeSettings(steps=2, guidance=1.0, seed=1)))
    assert a.shape == (dec.sizes.native, dec.sizes.native, 3) and np.array_equal(a, b)
    with pytest.raises(UserError, match="takes 32-d image embeddings"):
        dec.decode(torch.zeros(1, 1024), None, DecodeSettings(steps=2))


DEAD_HUB = "http://127.0.0.1:9"  # nothing listens there: every request is refused at once


def _in_hub_cache(cache, repo: str, pipeline_folder) -> None:
    """Lay ``pipeline_folder`` out as the Hugging Face cache holds a downloaded snapshot."""
    import shutil

    base = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(pipeline_folder, base / "snapshots" / commit)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)


def test_offline_download_is_one_sentence_that_says_what_to_do(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from sae.download import hub_snapshot

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        UserError,
        match=r"Could not download kandinsky-community/kandinsky-2-2-decoder \(about 5\.3 GB, .*"
        r"network connection",
    ) as e:
        hub_snapshot("kandinsky-community/kandinsky-2-2-decoder", int(5.3e9), endpoint=DEAD_HUB)
    assert "\n" not in str(e.value) and ". " not in str(e.value)


def test_a_cached_hub_decoder_loads_offline_through_the_download_path(tiny_kandinsky, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from sae.download import hub_snapshot

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _in_hub_cache(tmp_path / "hub", "kandinsky-community/kandinsky-2-2-decoder", tiny_kandinsky)
    seen = []
    local = hub_snapshot(
        "kandinsky-community/kandinsky-2-2-decoder", 10, on_progress=lambda d, t: seen.append((d, t)), endpoint=DEAD_HUB
    )
    assert (local / "model_index.json").is_file() and seen and seen[-1][0] == seen[-1][1] > 0
    dec = KandinskyDecoder(local, torch.zeros(1, 24))
    assert dec.decode(torch.zeros(1, 24), None, DecodeSettings(steps=2)).size == (64, 64)


def test_the_zero_image_embedding_is_kept_per_encoder_and_made_again_when_damaged(tiny_clip, tmp_path, monkeypatch):
    """A hub Kandinsky folder has no negative embedding: the encoder's reading of a blank image is
    computed once per encoder's weights, read back on the next load, and made again from a
    damaged or mismatched file."""
    from safetensors.torch import save_file

    from sae.backbone import load_backbone
    from sae.decoders.kandinsky import NEGATIVE_FILE, ZERO_IMAGE_DIR, open_decoder

    monkeypatch.setenv("SAE_STUDIO_CACHE", str(tmp_path / "cache"))
    bb = load_backbone(str(tiny_clip))
    folder = tmp_path / "decoder"
    torch.manual_seed(0)
    save_pipeline(
        folder,
        UNet2DConditionModel(**unet_config(bb.embed_dim, quick=True)),
        VQModel(**movq_config(quick=True)),
        DDIMScheduler(**scheduler_config()),
        torch.zeros(bb.embed_dim),
    )
    (folder / NEGATIVE_FILE).unlink()  # as on the hub
    with torch.inference_mode():
        blank = bb.encode_image(torch.zeros(1, 3, bb.image_size, bb.image_size))

    assert torch.allclose(open_decoder(folder, bb, "k").negative_embeds, blank)
    kept = tmp_path / "cache" / ZERO_IMAGE_DIR / f"{bb.fingerprint}-{bb.image_size}.safetensors"
    assert kept.is_file()
    save_file({"embedding": torch.full_like(blank, 0.5)}, str(kept))  # what the next load reads is the file
    assert (open_decoder(folder, bb, "k").negative_embeds == 0.5).all()
    for damage in (
        lambda: kept.write_bytes(b"\x00" * 7),
        lambda: save_file({"embedding": torch.ones(1, bb.embed_dim + 1)}, str(kept)),
        lambda: save_file({"embedding": torch.full_like(blank, float("nan"))}, str(kept)),
        lambda: save_file({"other": blank.contiguous()}, str(kept)),
    ):
        damage()
        assert torch.allclose(open_decoder(folder, bb, "k").negative_embeds, blank)
        assert torch.allclose(load_file(str(kept))["embedding"], blank)  # and written again


def test_the_command_lines_download_bar_shows_a_download_and_not_a_cached_copy(capsys):
    """The bar the CLI gives every hub download (decoders, SAEs): a copy already in the cache
    reports done at once and shows nothing."""
    from sae.cli import download_bar

    with download_bar() as report:
        report(8192, 8192)
    assert "download" not in capsys.readouterr().err
    with download_bar() as report:
        for done in (0, 4096, 8192):
            report(done, 8192)
    err = capsys.readouterr().err
    assert "download" in err and "8.19k/8.19k" in err
