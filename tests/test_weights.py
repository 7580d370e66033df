"""sae.weights: an encoder's safetensors read into its own parameters with plain reads (no mapping
to unmap in one GIL-holding stall), equal to what safetensors itself reads; damaged files refused."""

from __future__ import annotations

import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae.errors import UserError
from sae.weights import load_into, read_ahead, read_header, without_init


def test_an_encoder_loads_exactly_the_saved_tensors_in_any_precision(tiny_clip):
    from sae.backbone import load_backbone

    saved = load_file(str(tiny_clip / "open_clip_model.safetensors"))
    loaded = load_backbone(str(tiny_clip)).model.state_dict()
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    half = load_backbone(str(tiny_clip), precision="fp16").model.state_dict()
    assert any(t.dtype == torch.float16 for t in half.values())
    assert all(torch.equal(saved[k].to(half[k].dtype), half[k]) for k in saved)


def test_a_file_with_other_names_is_left_to_the_callers_loader(tmp_path):
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    save_file({"linear.weight": torch.ones(2, 3), "linear.bias": torch.ones(2)}, tmp_path / "w.safetensors")
    assert load_into(model, tmp_path / "w.safetensors") is False and torch.equal(model.weight, before)
    save_file({"weight": torch.full((2, 3), 2.0), "bias": torch.arange(2.0)}, tmp_path / "w.safetensors")
    assert load_into(model, tmp_path / "w.safetensors") is True
    assert torch.equal(model.weight, torch.full((2, 3), 2.0)) and torch.equal(model.bias, torch.arange(2.0))


@pytest.mark.parametrize("damage", ["truncated", "huge header", "offsets past the end", "not json", "short"])
def test_a_damaged_file_is_refused_in_one_sentence(tmp_path, damage):
    path = tmp_path / "w.safetensors"
    save_file({"weight": torch.ones(2, 3), "bias": torch.ones(2)}, path)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    if damage == "truncated":
        data = data[:-4]
    elif damage == "huge header":
        data = struct.pack("<Q", 2**62) + data[8:]
    elif damage == "offsets past the end":
        data = data[: 8 + n] + b""  # the header promises bytes the file does not have
    elif damage == "not json":
        data = data[:8] + b"{" * n + data[8 + n :]
    else:
        data = data[:5]
    path.write_bytes(data)
    with pytest.raises(UserError) as e:
        read_header(path)
    assert str(e.value).count(".") <= 2 and str(path) in str(e.value)


def test_initialisers_do_nothing_inside_without_init_and_are_restored_after_an_error():
    from torch.nn.modules import activation

    originals = torch.nn.init.kaiming_uniform_, activation.xavier_uniform_
    t = torch.zeros(3, 4)
    with pytest.raises(RuntimeError), without_init():
        torch.nn.init.normal_(t)
        torch.nn.MultiheadAttention(4, 2)  # binds xavier_uniform_ by name at import: skipped too
        assert torch.equal(t, torch.zeros(3, 4)) and activation.xavier_uniform_ is not originals[1]
        raise RuntimeError
    assert (torch.nn.init.kaiming_uniform_, activation.xavier_uniform_) == originals
    torch.nn.init.normal_(t)
    assert t.abs().sum() > 0


def test_read_ahead_reads_each_weights_file_a_pipeline_loads_once_and_no_variant(tmp_path):
    for part, n in (("unet", 1000), ("movq", 300)):
        (tmp_path / part).mkdir()
        save_file({"w": torch.zeros(n)}, str(tmp_path / part / "diffusion_pytorch_model.safetensors"))
    save_file(
        {"w": torch.zeros(5000, dtype=torch.float16)},
        str(tmp_path / "unet" / "diffusion_pytorch_model.fp16.safetensors"),
    )
    (tmp_path / "unet" / "config.json").write_text("{}")
    expected = sum(p.stat().st_size for p in tmp_path.rglob("diffusion_pytorch_model.safetensors"))
    assert read_ahead(tmp_path) == expected
    assert read_ahead(tmp_path / "not-here") == read_ahead("kandinsky-community/kandinsky-2-2-decoder") == 0
