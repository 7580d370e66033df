"""Hub downloads with progress and cancel, and one sentence when the network is not there.

``hub_snapshot`` fetches a diffusers pipeline repository into the usual Hugging Face cache (or
finds it there) with ``huggingface_hub.snapshot_download``, skipping pickled weight files (only
safetensors are ever loaded); ``hub_sae_folder`` fetches one SAE folder of a repository the same
way, its pickles included (``sae.published`` reads them safely). Progress is the bytes in the
repository's cache folder, polled while the download runs, against the expected size: it works
with every huggingface_hub version, and a resumed download starts where the last one stopped.
Cancel stops at the next chunk huggingface_hub reports; what was downloaded stays in the cache
and is resumed next time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from sae.errors import UserError
from sae.model import sae_folders_inside

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
    allow_patterns: list[str] | None = None,
    instead: str = "choose a folder that holds a saved pipeline",
) -> Path:
    """The local folder of ``repo``'s newest snapshot, downloaded first if needed.

    ``on_progress(done_bytes, total_bytes)`` is called from a helper thread while the download
    runs; ``should_stop()`` cancels (raises DownloadCancelled). Network and cache failures
    become one UserError sentence ending in what to do ``instead``. ``endpoint`` is a hub mirror
    (default: ``HF_ENDPOINT`` or the hub). ``allow_patterns`` fetches only those files (by default
    every file but pickled weights).
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
        path = snapshot_download(
            repo,
            allow_patterns=allow_patterns,
            ignore_patterns=None if allow_patterns else SKIP,
            tqdm_class=_CancellableBar,
            endpoint=endpoint,
        )
    except DownloadCancelled:
        raise
    except Exception as e:  # offline, DNS, HTTP errors, a full disk: one sentence
        if should_stop and should_stop():
            raise DownloadCancelled(f"Stopped the download of {repo}.") from e
        reason = str(e).strip().splitlines()[0].split(". ")[0][:200].removeprefix("Got: ").rstrip(".")
        reason = reason or type(e).__name__
        size = f"about {expected_bytes / 1e9:.1f} GB, " if expected_bytes else ""
        raise UserError(
            f"Could not download {repo} ({size}{reason}): it is fetched once into the Hugging Face cache and "
            f"then works offline, so check the network connection and disk space, or {instead}."
        ) from e
    finally:
        done.set()
        poller.join()
    if on_progress:
        n = cached_bytes(folder)
        on_progress(n, max(n, expected_bytes))
    return Path(path)


# -- SAEs on the hub ------------------------------------------------------------------------------

HUB_PREFIX = "hf:"
SAE_FILES = (".json", ".safetensors", ".pt", ".pth")  # configs, weights, the published pickles


def sae_files(files: list[str], folder: str, only: str = "") -> tuple[list[str], list[str]]:
    """(the SAE files directly in ``folder`` of a repository listing, the SAE folders inside it);
    with ``only`` (one pickle's name), that pickle and the folder's configs."""
    prefix = f"{folder}/" if folder else ""
    inside = [f[len(prefix) :] for f in files if f.startswith(prefix)]
    here = [prefix + f for f in inside if "/" not in f and f.endswith(SAE_FILES)]
    if only:
        here = [f for f in here if f in (prefix + only,) or f.endswith(".json")]
    folders = sorted({f.rsplit("/", 1)[0] for f in inside if f.endswith("/cfg.json")})
    return here, folders


def hub_sae_folder(
    spec: str,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    endpoint: str | None = None,
) -> Path:
    """The local folder of the hub SAE ``hf:OWNER/REPO[/FOLDER]`` (or its file ``.../NAME.pt`` when the
    folder holds several pickles). Only the files directly in FOLDER are fetched (a release holds one
    SAE folder per layer), once, into the Hugging Face cache; with no network, the cached copy is used."""
    parts = [p for p in spec.removeprefix(HUB_PREFIX).split("/") if p]
    if len(parts) < 2:
        raise UserError(f"'{spec}' does not name a hub repository: write hf:OWNER/REPO or hf:OWNER/REPO/FOLDER.")
    only = parts.pop() if len(parts) > 2 and parts[-1].endswith((".pt", ".pth")) else ""
    repo, folder = "/".join(parts[:2]), "/".join(parts[2:])
    wanted = None
    try:
        from huggingface_hub import HfApi

        # one request (the repository's file list), which fails at once with no network
        listing = [s.rfilename for s in HfApi(endpoint=endpoint).model_info(repo).siblings or []]
    except Exception:  # offline, or the hub unreachable: the cache (or its sentence) answers below
        listing = None
    if listing is not None:
        wanted, folders = sae_files(listing, folder, only)
        if not wanted:
            where = f"{repo}/{folder}" if folder else repo
            shown = f"; its SAE folders: {', '.join(folders[:3])}{' …' if len(folders) > 3 else ''}" if folders else ""
            raise UserError(f"{where} on the hub holds no SAE files (cfg.json, weights){shown}.")
    root = hub_snapshot(
        repo,
        on_progress=on_progress,
        should_stop=should_stop,
        endpoint=endpoint,
        allow_patterns=wanted,
        instead="import a folder you downloaded",
    )
    if not (root / folder).is_dir() or (only and not (root / folder / only).is_file()):
        raise UserError(
            f"The copy of {repo} in the Hugging Face cache has no {'file' if only else 'folder'} "
            f"'{'/'.join(parts[2:] + ([only] if only else []))}'."
        )
    if only:
        return root / folder / only
    if not (root / folder / "cfg.json").is_file() and (inside := sae_folders_inside(root / folder)):
        raise UserError(f"{spec} holds SAE folders, not one SAE: {inside}; pass one, as {spec.rstrip('/')}/NAME.")
    return root / folder
