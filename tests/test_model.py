"""The SAE: SAELens reads our folders with the same activations; bad folders get one sentence."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sae.errors import UserError
from sae.kernels import topk_codes
from sae.model import SparseAutoencoder, check_fits_layer
from sae.sae_config import SaeConfig, SaeMetadata


def _trained_like(arch: str, d_in=24, d_sae=96, k=6) -> tuple[SparseAutoencoder, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, d_in, generator=g) * 7 + 3  # far from unit norm: the scale matters
    sae = SparseAutoencoder(SaeConfig(d_in, d_sae, arch, k), SaeMetadata(backbone="tiny", layer=2))
    sae.initialize(x, generator=g)
    with torch.no_grad():
        sae.b_enc.normal_(generator=g)
        sae.W_enc_T.add_(torch.randn(d_sae, d_in, generator=g) * 0.1)
    return sae, x


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_saelens_loads_saved_folder_with_same_activations(tmp_path, arch):
    sae_lens = pytest.importorskip("sae_lens")
    sae, x = _trained_like(arch)
    assert float(sae.input_scale) != 1.0
    with torch.no_grad():
        ours = sae.encode(x)
        ours_recon = sae.decode(ours)
    assert (ours > 0).any()
    sae.save(tmp_path / "sae")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"))
    with torch.no_grad():
        f = theirs.encode(x)
        assert torch.allclose(f, ours, atol=1e-5)
        assert torch.allclose(theirs.decode(f), ours_recon, atol=1e-4)


def test_save_load_round_trip_keeps_activations_and_metadata(tmp_path):
    sae, x = _trained_like("topk")
    sae.metadata.metrics = {"fvu": 0.05}
    sae.save(tmp_path / "sae")
    back = SparseAutoencoder.load(tmp_path / "sae")
    with torch.no_grad():
        assert torch.allclose(back.encode(x), sae.encode(x), atol=1e-5)
    assert back.metadata.layer == 2 and back.metadata.metrics == {"fvu": 0.05}
    assert back.metadata.input_scale == pytest.approx(float(sae.input_scale))
    assert (tmp_path / "sae" / "labels.json").is_file()


def test_sparse_encode_decode_equal_dense(tmp_path):
    sae, x = _trained_like("topk")
    with torch.no_grad():
        code = sae.encode_sparse(x)
        assert torch.allclose(sae.decode_sparse(code), sae.decode(sae.encode(x)), atol=1e-4)


def test_a_bf16_gemm_chooses_the_latents_and_their_values_are_computed_exactly():
    g = torch.Generator().manual_seed(3)
    B, d, F_, k = 64, 48, 512, 8
    xc, W, b = torch.randn(B, d, generator=g), torch.randn(F_, d, generator=g), torch.randn(F_, generator=g)
    dead = torch.zeros(F_, dtype=torch.bool)
    dead[::3] = True
    pre = xc @ W.T + b
    for dtype in (torch.float32, torch.bfloat16):
        codes = topk_codes(xc, W, b, k, dtype, dead, 5)
        assert codes.values.dtype == torch.float32
        torch.testing.assert_close(codes.values, pre.gather(1, codes.indices).relu())
        torch.testing.assert_close(codes.aux_values, pre.gather(1, codes.aux_indices).relu())
        assert dead[codes.aux_indices].all()
        best = pre.topk(k).values[:, -1:]  # the k-th largest: a bf16 GEMM may swap near-ties only
        assert (pre.gather(1, codes.indices) >= best - 0.05 * best.abs() - 0.05).all()


def test_pickle_only_folder_is_refused_without_reading_it(tmp_path):
    sae, _ = _trained_like("topk")
    sae.save(tmp_path / "sae")
    (tmp_path / "sae" / "sae_weights.safetensors").unlink()
    (tmp_path / "sae" / "sae_weights.pt").write_bytes(b"\x80\x04 would run code")
    with pytest.raises(UserError, match="never unpickles"):
        SparseAutoencoder.load(tmp_path / "sae")


def test_shape_mismatch_and_corrupt_weights_are_one_sentence(tmp_path):
    sae, _ = _trained_like("topk")
    sae.save(tmp_path / "sae")
    save_file(
        {"W_enc": torch.zeros(3, 3), "b_enc": torch.zeros(3), "W_dec": torch.zeros(3, 3), "b_dec": torch.zeros(3)},
        str(tmp_path / "sae" / "sae_weights.safetensors"),
    )
    with pytest.raises(UserError, match="do not belong together"):
        SparseAutoencoder.load(tmp_path / "sae")
    (tmp_path / "sae" / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable safetensors"):
        SparseAutoencoder.load(tmp_path / "sae")


def test_sae_width_must_fit_the_layer():
    sae, _ = _trained_like("topk")
    with pytest.raises(UserError, match="d_in=24 but layer 6 of ViT-B-16 has width 768"):
        check_fits_layer(sae, 768, "layer 6 of ViT-B-16")


def test_interrupted_save_leaves_previous_version(tmp_path):
    sae, x = _trained_like("topk")
    sae.save(tmp_path / "sae")
    before = (tmp_path / "sae" / "sae_weights.safetensors").read_bytes()

    def crash(_tmp):
        raise RuntimeError("power cut")

    with torch.no_grad():
        sae.W_dec.mul_(2)
    with pytest.raises(RuntimeError):
        sae.save(tmp_path / "sae", extra=crash)
    assert (tmp_path / "sae" / "sae_weights.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]
