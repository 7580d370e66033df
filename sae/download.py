"""Hub downloads with progress and cancel, and one sentence when the network is not there.

``hub_snapshot`` fetches a diffusers pipeline repository into the usual Hugging Face cache (or
finds it there) with ``huggingface_hub.snapshot_download``, skipping pickled weight files (only
safetensors are ever loaded). Progress is the bytes in the repository's cache folder, polled
while the download runs, against the expected size: it works with every huggingface_hub
version, and a resumed download starts where the last one stopped. Cancel stops at the next
chunk huggingface_hub reports; what was downloaded stays in the cache and is resumed next time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from sae.errors import UserError

# Weight formats sae-studio never loads (it never unpickles); repos often hold both.
SKIP = ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.pb"]


class DownloadCancelled(Exception):
    """The user stopped a download; the files so far stay in the cache."""


def repo_cache_dir(repo: str) -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def cached_bytes(folder: Path) -> int:
    """Bytes under ``folder`` (finished and partial blobs; symlinks not counted twice)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(root) / f
            if not p.is_symlink():
                try:
                    total += p.stat().st_size
                except OSError:
                    pass
    return total


def hub_snapshot(
    repo: str,
    expected_bytes: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    poll_seconds: float = 0.5,
    endpoint: str | None = None,
) -> Path:
    """The local folder of ``repo``'s newest snapshot, downloaded first if needed.

    ``on_progress(done_bytes, total_bytes)`` is called from a helper thread while the download
    runs; ``should_stop()`` cancels (raises DownloadCancelled). Network and cache failures
    become one UserError sentence. ``endpoint`` is a hub mirror (default: ``HF_ENDPOINT`` or the hub).
    """
    from huggingface_hub import snapshot_download

    class _CancellableBar(tqdm):  # huggingface_hub reports chunks through the class it is given
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if should_stop and should_stop():
                raise DownloadCancelled(f"Stopped the download of {repo}.")
            return super().update(n)

    folder = repo_cache_dir(repo)
    done = threading.Event()

    def poll() -> None:
        while not done.wait(poll_seconds):
            if on_progress:
                on_progress(cached_bytes(folder), expected_bytes)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        path = snapshot_download(repo, ignore_patterns=SKIP, tqdm_class=_CancellableBar, endpoint=endpoint)
    except DownloadCancelled:
        raise
    except Exception as e:  # offline, DNS, HTTP errors, a full disk: one sentence
        if should_stop and should_stop():
            raise DownloadCancelled(f"Stopped the download of {repo}.") from e
        reason = str(e).strip().splitlines()[0][:160].removeprefix("Got: ").rstrip(".") or type(e).__name__
        size = f"about {expected_bytes / 1e9:.1f} GB, " if expected_bytes else ""
        raise UserError(
            f"Could not download {repo} ({size}{reason}): it is fetched once into the Hugging Face cache and "
            "then works offline, so check the network connection and disk space, or choose a folder that "
            "holds a saved pipeline."
        ) from e
    finally:
        done.set()
        poller.join()
    if on_progress:
        n = cached_bytes(folder)
        on_progress(n, max(n, expected_bytes))
    return Path(path)
