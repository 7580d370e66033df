"""Data-parallel training on torch.distributed (``torchrun``): NCCL on GPUs, gloo on CPUs.

Every rank reads the same seeded stream of global batches and keeps the rows ``rank::world``
of each, so the data order does not depend on the number of ranks and a run resumes on any
world size. Losses are normalised by global-batch statistics and gradients summed across ranks,
so one optimiser step equals the single-process step on the whole batch (up to the order of
floating-point sums). Rank 0 alone writes checkpoints.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True inside a ``torchrun`` launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_preference: str = "auto") -> str:
    """Join the process group (once); returns the device name this rank should use."""
    cuda = torch.cuda.is_available() and device_preference in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def rows_among_first(n: int) -> int:
    """How many of this rank's rows (the global batch's ``rank::world``) are among its first ``n``:
    together the ranks hold exactly the rows one process would take."""
    return max(0, (n - rank() + world() - 1) // world())


def total(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a no-op alone)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(mask: torch.Tensor) -> torch.Tensor:
    """Elementwise OR of a boolean tensor over ranks."""
    if not active():
        return mask
    m = mask.to(torch.uint8)
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    return m.bool()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_(tensors) -> None:
    if active():
        for t in tensors:
            dist.broadcast(t.data, src=0)


def finish() -> None:
    """Leave the process group once every rank is done (call it on success only: after an error
    the other ranks may never reach the barrier). A rank that exits without it can abort in gloo's
    teardown ("terminate called without an active exception") while its peer still closes."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
