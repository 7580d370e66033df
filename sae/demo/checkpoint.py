"""Resumable training state of the demo recipes: module weights and Adam moments in one
safetensors file plus a JSON of counters, written in one atomic folder swap."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sae import atomic


def save_state(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, meta: dict) -> None:
    t = {}
    for name, m in modules.items():
        t.update({f"{name}.{k}": v.detach().contiguous() for k, v in m.state_dict().items()})
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = opt.state.get(p)
        if st:
            t[f"opt.{i}.step"] = st["step"].reshape(1).float()
            t[f"opt.{i}.exp_avg"], t[f"opt.{i}.exp_avg_sq"] = st["exp_avg"], st["exp_avg_sq"]
    with atomic.atomic_dir(folder) as tmp:
        save_file(t, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))


def load_state(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict | None:
    atomic.recover_dir(folder)
    if not (folder / "state.json").is_file():
        return None
    t = load_file(str(folder / "state.safetensors"))
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1 :]: v for k, v in t.items() if k.startswith(name + ".")})
    state = opt.state_dict()
    params = [p for g in opt.param_groups for p in g["params"]]
    for i in range(len(params)):
        if f"opt.{i}.exp_avg" in t:
            state["state"][i] = {
                "step": t[f"opt.{i}.step"].reshape(()),
                "exp_avg": t[f"opt.{i}.exp_avg"],
                "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"],
            }
    opt.load_state_dict(state)
    return json.loads((folder / "state.json").read_text())


def save_compact(folder: Path, modules: dict[str, torch.nn.Module], meta: dict) -> None:
    """Weights only, in fp16, for a checkpoint small enough to commit between sessions; resuming
    from it restarts Adam's moments (a short re-warm), which ``load_compact``'s caller accepts."""
    t = {}
    for name, m in modules.items():
        t.update({f"{name}.{k}": v.detach().half().contiguous() for k, v in m.state_dict().items()})
    with atomic.atomic_dir(folder) as tmp:
        save_file(t, str(tmp / "weights.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))


def load_compact(folder: Path, modules: dict[str, torch.nn.Module]) -> dict | None:
    if not (folder / "state.json").is_file():
        return None
    t = load_file(str(folder / "weights.safetensors"))
    for name, m in modules.items():
        ref = m.state_dict()
        m.load_state_dict({k: t[f"{name}.{k}"].to(ref[k].dtype) for k in ref})
    return json.loads((folder / "state.json").read_text())


def rewarm(step: int, resumed_at: int | None, span: int = 100) -> float:
    """Factor on the learning rate after resuming from a compact checkpoint at ``resumed_at``
    (``None``: not resumed so): Adam's moments start from zero there, so the rate climbs back over
    ``span`` steps instead of jumping to full at once."""
    return 1.0 if resumed_at is None else min(1.0, (step - resumed_at + 1) / span)


def recipe_of(folder: Path) -> str | None:
    """The recipe a checkpoint folder was written by (a checkpoint of another recipe is not resumed)."""
    try:
        return json.loads((folder / "state.json").read_text()).get("recipe")
    except (OSError, ValueError):
        return None
