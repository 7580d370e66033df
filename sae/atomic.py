"""Atomic writes: a crash leaves the previous version of a file or folder, never half of a new one;
and the JSON those files hold, read back."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


def clear_stale(target: str | os.PathLike) -> None:
    """Remove the temporaries that writers of ``target`` killed mid-write left behind.

    Temporaries are named ``.tmp-NAME.PID.RANDOM``; one whose process is gone is stale (a live
    writer's, on this machine, is left alone).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    for p in target.parent.glob(f".tmp-{target.name}.*"):
        pid = p.name[len(f".tmp-{target.name}.") :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _prefix(target: Path) -> str:
    return f".tmp-{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    The temporary name starts with ``.tmp-`` so that readers and resumers can ignore it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def parse_json(text: str | bytes, **kwargs: Any) -> Any:
    """``json.loads``, with a document nested past the parser's recursion limit (a hostile file) raised
    as the ValueError any other invalid JSON gives, so every reader's sentence covers it."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError as e:
        raise ValueError("nested too deeply to read") from e


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target``.

    An existing ``target`` is moved aside first and removed only after the new one is in
    place, so at every instant one complete version exists under one of two names;
    :func:`recover_dir` puts the old one back if a crash fell between the two renames.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=target.parent))
    old = target.parent / f".old-{target.name}"
    try:
        yield tmp
        for p in tmp.iterdir():
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(target: str | os.PathLike) -> None:
    """Undo a crash between the two renames of :func:`atomic_dir` and clear stale temporaries."""
    target = Path(target)
    old = target.parent / f".old-{target.name}"
    if not target.exists() and old.exists():
        os.replace(old, target)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)
    clear_stale(target)
