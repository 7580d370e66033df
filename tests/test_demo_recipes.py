"""The demo recipes' training machinery: compact checkpoints, resuming a stopped recipe to the
uninterrupted weights, and the decoder's warm starts."""

from __future__ import annotations

import pytest
import torch


def test_compact_checkpoint_round_trips_weights_in_fp16(tmp_path):
    import torch

    from sae.demo.checkpoint import load_compact, save_compact

    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    save_compact(tmp_path / "c", {"net": a}, {"step": 7})
    assert load_compact(tmp_path / "c", {"net": b}) == {"step": 7}
    assert torch.allclose(a.weight, b.weight, atol=1e-3) and b.weight.dtype == torch.float32
    assert load_compact(tmp_path / "missing", {"net": b}) is None


def test_resuming_from_a_compact_checkpoint_rewarms_the_rate():
    """Adam's moments are not in a compact checkpoint: the rate climbs back over 100 steps."""
    from sae.demo.checkpoint import rewarm

    assert rewarm(1234, None) == 1.0
    assert [rewarm(s, 400) for s in (400, 449, 499, 600)] == [0.01, 0.5, 1.0, 1.0]


@pytest.mark.slow
def test_judge_recipe_stopped_at_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    from sae.demo.judge import train_judge

    kw = dict(quick=True, progress=False, checkpoint_every=20)
    whole = train_judge(tmp_path / "whole", tmp_path / "work-whole", **kw)
    calls = iter([False, True])
    stopped = train_judge(tmp_path / "split", tmp_path / "work-split", should_stop=lambda: next(calls), **kw)
    assert stopped == {"stopped_at": 40} and not (tmp_path / "split").exists()
    resumed = train_judge(tmp_path / "split", tmp_path / "work-split", **kw)
    a = load_file(str(next((tmp_path / "whole").glob("*.safetensors"))))
    b = load_file(str(next((tmp_path / "split").glob("*.safetensors"))))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["presence"] == whole["presence"]


def test_the_warm_schedules_the_cli_offers_are_the_recipes():
    from sae.cli import build_parser
    from sae.demo.decoder import UNET_STEPS, WARM_SCHEDULES

    args = build_parser().parse_args(["demo", "build", "--warm-start", "D", "--warm-schedule", "continue"])
    assert args.warm_schedule == "continue"
    demo = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["demo"]._actions if a.dest == "demo_command"
    ).choices["build"]
    offered = next(a for a in demo._actions if a.dest == "warm_schedule").choices
    assert set(offered) == set(WARM_SCHEDULES)
    # relearning is shorter than a fresh run; continuing trains on for longer than either
    assert WARM_SCHEDULES["relearn"][0][0] < UNET_STEPS < WARM_SCHEDULES["continue"][0][0]
    assert all(0 < anneal < steps for phases in WARM_SCHEDULES.values() for steps, anneal, _, _ in phases)
    # only the edits schedule trains on edit pairs: on half of each batch first, then on fewer and
    # fewer, each phase at a lower rate than the first
    assert [name for name, phases in WARM_SCHEDULES.items() if any(p[3] for p in phases)] == ["edits"]
    shares = [p[3] for p in WARM_SCHEDULES["edits"]]
    assert 0 < shares[-1] and shares == sorted(shares, reverse=True) and shares[0] < 1
    assert all(p[2] < WARM_SCHEDULES["edits"][0][2] for p in WARM_SCHEDULES["edits"][1:])


def test_a_warm_start_for_a_wider_latent_keeps_all_but_the_latent_convolutions():
    from diffusers import UNet2DConditionModel

    from sae.demo.decoder import transplant, unet_config

    torch.manual_seed(0)
    old = UNet2DConditionModel(**unet_config(32, quick=True, latent_channels=8)).state_dict()
    torch.manual_seed(1)
    new = UNet2DConditionModel(**unet_config(32, quick=True, latent_channels=16))
    before = {k: v.clone() for k, v in new.state_dict().items()}
    renewed = transplant(new, old)
    after = new.state_dict()
    assert sorted({k.split(".")[0] for k in renewed}) == ["conv_in", "conv_out"]
    assert after["conv_in.weight"].shape[1] == 16 and torch.equal(after["conv_in.weight"], before["conv_in.weight"])
    kept = [k for k in after if k not in renewed]
    assert len(kept) > 100 and all(torch.equal(after[k], old[k]) for k in kept)
    # another trunk is refused, not half-loaded
    other = UNet2DConditionModel(
        **{**unet_config(32, quick=True, latent_channels=16), "block_out_channels": (32, 64, 64)}
    )
    try:
        transplant(other, old)
    except ValueError as e:
        assert "another architecture" in str(e)
    else:
        raise AssertionError("a UNet with another trunk was loaded")
