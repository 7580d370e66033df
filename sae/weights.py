"""Reading a safetensors file straight into a model's own tensors, with plain file reads.

safetensors maps the whole file into memory and unmaps it when its last tensor goes; after a
10 GB encoder has been copied out of it, that one unmapping holds the GIL for 250 to 400 ms, a
stall of the editor's GUI thread while the model loads on a worker. Reading each tensor's bytes
into the parameter it fills maps nothing, keeps no second copy, and lets the GUI thread run
during every read. The format is the one safetensors documents: an 8-byte little-endian header
length, a JSON header of {name: {dtype, shape, data_offsets}}, then the data.

A model about to be filled that way is built ``without_init``: its random initialisation (19 s
for ViT-bigG-14 on two cores, all of it overwritten) is skipped.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from sae import atomic
from sae.errors import UserError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header

# torch's initialisers, and the modules that bound them by name at import (as transformers'
# no_init_weights patches them; its home moved between versions, so it is not imported here)
INITIALISERS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)
INIT_MODULES = (
    "torch.nn.init",
    "torch.nn.modules.activation",
    "torch.nn.modules.linear",
    "torch.nn.modules.conv",
    "torch.nn.modules.normalization",
    "torch.nn.modules.sparse",
    "torch.nn.modules.transformer",
)


@contextmanager
def without_init() -> Iterator[None]:
    """Modules built inside leave their parameters uninitialised (torch.empty's contents): only
    for a model whose every tensor is read next (``load_into`` checks that it is)."""

    def keep(tensor, *args, **kwargs):
        return tensor

    replaced = []
    try:
        for name in INIT_MODULES:
            module = sys.modules.get(name)
            for fn in INITIALISERS:
                if module is not None and hasattr(module, fn):
                    replaced.append((module, fn, getattr(module, fn)))
                    setattr(module, fn, keep)
        yield
    finally:
        for module, fn, original in replaced:
            setattr(module, fn, original)


def read_header(path: Path) -> tuple[dict[str, dict], int]:
    """The tensors a safetensors file holds ({name: {dtype, shape, data_offsets}}) and where its
    data begins; one sentence on a file that is not one."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(MAX_HEADER, size - 8):
            raise UserError(f"{path} is not a safetensors file (its header length is {n}).")
        try:
            header = atomic.parse_json(f.read(n))
        except ValueError as e:
            raise UserError(f"{path} is not a safetensors file ({e}).") from e
    if not isinstance(header, dict):
        raise UserError(f"{path} is not a safetensors file (its header is not a table).")
    header.pop("__metadata__", None)
    start = 8 + n
    for name, entry in header.items():
        try:
            dtype, shape, (a, b) = DTYPES[entry["dtype"]], [int(s) for s in entry["shape"]], entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path} describes tensor {name} in a way safetensors does not ({e}).") from e
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        if not (isinstance(a, int) and isinstance(b, int) and 0 <= a <= b and b - a == nbytes and start + b <= size):
            raise UserError(f"{path} is damaged: tensor {name}'s bytes do not lie where its header says.")
    return header, start


def load_into(module: torch.nn.Module, path: str | Path) -> bool:
    """Fill ``module``'s parameters and buffers from ``path`` when the file holds exactly its
    tensors by name and shape (True); False, reading nothing, when it does not (the caller's own
    loader then converts it)."""
    path = Path(path)
    header, start = read_header(path)
    targets = module.state_dict(keep_vars=True)
    if set(header) != set(targets) or any(
        list(targets[k].shape) != [int(s) for s in e["shape"]] for k, e in header.items()
    ):
        return False
    with torch.no_grad(), open(path, "rb", buffering=0) as f:
        for name, entry in header.items():
            dst = targets[name].data
            dtype = DTYPES[entry["dtype"]]
            direct = dst.dtype == dtype and dst.is_contiguous() and dst.device.type == "cpu"
            buf = dst if direct else torch.empty(dst.shape, dtype=dtype)
            if buf.numel():
                f.seek(start + entry["data_offsets"][0])
                view = memoryview(buf.view(-1).view(torch.uint8).numpy())
                while view.nbytes:  # a read may return less than asked
                    got = f.readinto(view)
                    if not got:
                        raise UserError(f"{path} ended early, inside tensor {name}.")
                    view = view[got:]
            if not direct:
                dst.copy_(buf)
    return True


READ_AHEAD_CHUNK = 16 * 2**20


def read_ahead(folder: str | Path) -> int:
    """Read once through every safetensors file a diffusers folder loads (variants such as
    ``*.fp16.safetensors`` aside); returns the bytes read. diffusers memory-maps each file and
    holds the GIL while it maps each tensor; with the file not yet in the page cache each of
    those waits on the disk (20 to 40 ms a tensor, stalls of the editor's GUI thread). Plain
    reads release the GIL, and the pages they bring in are the ones the maps then share, so
    nothing is kept twice. A hub name (no such folder) reads nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    buffer = memoryview(bytearray(READ_AHEAD_CHUNK))
    total = 0
    for path in sorted(folder.rglob("*.safetensors")):
        if path.name.count(".") > 1:  # diffusion_pytorch_model.fp16.safetensors: another variant
            continue
        try:
            with open(path, "rb", buffering=0) as f:
                while got := f.readinto(buffer):
                    total += got
        except OSError:  # unreadable here: from_pretrained says so in its own words
            continue
    return total
