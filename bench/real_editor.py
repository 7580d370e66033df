"""The editor at real size on this machine: ViT-bigG-14 + Kandinsky 2.2 (random weights, full size).

What a CPU user meets: how long the models take to load, the time to the first picture of a
512x512 photograph at the decoder's default steps, a drag's first preview, a slider release's
full render, how soon Stop takes effect, and the longest stall of the GUI thread meanwhile (a 5 ms
heartbeat timer; target <= 50 ms), beside the longest gap the same heartbeat sees in an idle
process at the same time: the machine's own floor, which no change to the editor can lower (a GUI
gap that overlaps a gap of the idle process is the machine's; the longest of the others is the
editor's own). The encoder and decoder are written once in open_clip's and the hub's layouts
(about 15 GB in ``--work``, kept for the next run) and opened by the editor's own loaders, with a
16x SAE at the middle layer.

    python bench/real_editor.py [--work DIR] [--steps 30] [--size 512] [--until PHASE] [--why] [--switch]

On this two-core CPU it takes about 15 minutes and ~20 GB of memory. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gui_responsiveness import _wait, _wait_until  # noqa: E402

LAYER = 24  # the middle of ViT-bigG-14's 48 blocks


def build(work: Path, factor: int = 1) -> tuple[Path, Path, Path]:
    """The encoder, a 16x SAE at the middle layer and the decoder (every width divided by
    ``factor``), written once into ``work``."""
    import torch

    from sae.model import SparseAutoencoder
    from sae.sae_config import SaeConfig, SaeMetadata
    from sae.shapes import save_clip, save_kandinsky

    work = work / f"factor-{factor}"
    clip, decoder, sae_dir = work / "vit-bigg-14", work / "kandinsky-2.2", work / "sae"
    if not (clip / "open_clip_config.json").is_file():
        print("writing ViT-bigG-14 (random weights, open_clip's layout)…", flush=True)
        save_clip("ViT-bigG-14", clip, factor=factor)
    if not (decoder / "model_index.json").is_file():
        print("writing the Kandinsky 2.2 decoder (random weights, the hub's layout)…", flush=True)
        save_kandinsky(decoder, factor=factor)
    if not (sae_dir / "cfg.json").is_file():
        width = 1664 // factor
        sae = SparseAutoencoder(
            SaeConfig(d_in=width, d_sae=16 * width, k=32), SaeMetadata(layer=LAYER, backbone=f"local-dir:{clip}")
        )
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in sae.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        sae.save(sae_dir)
    return clip, decoder, sae_dir


FLOOR = """
import sys, threading, time
worst, stalls = 0.0, []
def beat():
    global worst
    last = time.perf_counter()
    while True:
        time.sleep(0.005)
        now = time.perf_counter()
        if now - last > SHARED_S:
            stalls.append(f"{last:.4f}:{now:.4f}")
        worst, last = max(worst, now - last), now
threading.Thread(target=beat, daemon=True).start()
for _ in sys.stdin:
    print(f"{worst * 1000:.1f}", *stalls, flush=True)
    worst, stalls[:] = 0.0, []
"""
SHARED_MS = 20.0  # an idle-process gap this long overlapping a GUI gap makes that gap the machine's


class Floor:
    """The machine's own floor: the same 5 ms heartbeat in a separate idle process (no GIL or
    torch threads shared with the editor). Gaps it sees come from the machine, not the editor: a
    GUI gap that overlaps one of them is the machine's too, the others are the editor's own."""

    def __init__(self):
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"SHARED_S = {SHARED_MS / 1000}\n" + FLOOR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def take(self) -> tuple[float, list[tuple[float, float]]]:
        """The longest gap since the last call (ms), and its gaps over SHARED_MS (start, end: s)."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        worst, *stalls = self.proc.stdout.readline().split()
        return float(worst), [tuple(float(t) for t in stall.split(":")) for stall in stalls]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


class Heart:
    """A 5 ms timer on the GUI thread; the longest gap between its ticks per phase, and every gap
    over STALL_MS (when, how long, and from Linux's schedstat how much of it the GUI thread ran,
    how much it was ready but waited for a core; the rest it slept, on the GIL or for events)."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.last = time.perf_counter()
        self.phase, self.worst = "start", {}
        # (start, end, phase, ms ran, ms queued, pages read from disk)
        self.stalls: list[tuple[float, float, str, float, float, int]] = []
        self.gaps: list[tuple[float, float, str]] = []  # every gap over SHARED_MS: (start, end, phase)
        self._task = f"/proc/self/task/{threading.get_native_id()}"
        self.sched = self._scheduling()
        self.timer = QTimer(interval=5)
        self.timer.timeout.connect(self.beat)
        self.timer.start()

    def beat(self) -> None:
        now = time.perf_counter()
        gap = (now - self.last) * 1000
        self.worst[self.phase] = max(self.worst.get(self.phase, 0.0), gap)
        sched = self._scheduling()
        if gap > SHARED_MS:
            self.gaps.append((self.last, now, self.phase))
        if gap > STALL_MS:
            ran, queued, faults = (b - a for a, b in zip(self.sched, sched, strict=True))
            self.stalls.append((self.last, now, self.phase, ran, queued, faults))
        self.last, self.sched = now, sched

    def own_worst(self, phase: str, machine: list[tuple[float, float]]) -> float:
        """The longest of ``phase``'s gaps that no gap of the idle process (``machine``) overlaps:
        the editor's own; SHARED_MS at most when every longer gap was shared."""
        own = [
            (end - start) * 1000
            for start, end, in_phase in self.gaps
            if in_phase == phase and not any(s < end and start < e for s, e in machine)
        ]
        return max(own, default=min(self.worst.get(phase, 0.0), SHARED_MS))

    def _scheduling(self) -> tuple[float, float, int]:
        """How long the GUI thread has run and waited ready to run for a core (ms), and how many of
        its page faults had to wait for the disk (0 where nobody says)."""
        try:
            with open(f"{self._task}/schedstat") as f:
                ran, queued = f.read().split()[:2]
            with open(f"{self._task}/stat") as f:
                majflt = f.read().rsplit(")", 1)[1].split()[9]  # field 12, counted after the name
            return int(ran) / 1e6, int(queued) / 1e6, int(majflt)
        except (OSError, ValueError, IndexError):
            return 0.0, 0.0, 0


STALL_MS = 35.0  # --why explains the GUI gaps longer than this
LONG_CALL_S = 0.015  # by the calls into C longer than this that overlapped them


def _module(frame) -> str:
    """The module an import was making, where the call was one (its spec is the caller's)."""
    if frame.f_code.co_name != "_call_with_frames_removed" or frame.f_back is None:
        return ""
    spec = frame.f_back.f_locals.get("spec") or getattr(frame.f_back.f_locals.get("module"), "__spec__", None)
    return f" (importing {spec.name})" if spec is not None else ""


class LongCalls:
    """For ``--why``: every call into C (a builtin or an extension function) longer than
    LONG_CALL_S on the editor's worker threads, with where it was made; every Python call the GUI
    thread's event loop made that long; every garbage collection. A GUI stall that no such
    call overlaps was the machine's (compare the idle process); one that a call overlaps names
    what held the GIL or the cores."""

    def __init__(self):
        import editor.jobs

        self.calls: list[tuple[float, float, str]] = []
        self._started: dict[int, float] = {}
        self._gc_started = 0.0
        make = editor.jobs.create_worker

        def profiled(fn):
            def run(*args, **kwargs):
                sys.setprofile(self._profile)
                return fn(*args, **kwargs)

            return run

        editor.jobs.create_worker = lambda fn, *args, **kwargs: make(profiled(fn), *args, **kwargs)
        gc.callbacks.append(self._collection)
        sys.setprofile(self._gui_profile)  # the GUI thread: every Python call Qt makes into the app

    def _collection(self, phase: str, info: dict) -> None:
        """Garbage collections hold the GIL in whichever thread runs them."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif time.perf_counter() - self._gc_started > 0.005:
            name = f"garbage collection of generation {info['generation']} in {threading.current_thread().name}"
            self.calls.append((self._gc_started, time.perf_counter(), name))

    def _gui_profile(self, frame, event, arg) -> None:
        """Qt's calls into Python on the GUI thread (slots, event handlers) longer than LONG_CALL_S."""
        if frame.f_back is not None:
            return
        if event == "call":
            self._started[id(frame)] = time.perf_counter()
        elif event == "return":
            t = self._started.pop(id(frame), None)
            if t is not None and time.perf_counter() - t > LONG_CALL_S:
                where = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_firstlineno}"
                self.calls.append((t, time.perf_counter(), f"GUI thread: {frame.f_code.co_qualname} at {where}"))

    def _profile(self, frame, event, arg) -> None:
        if event == "c_call":
            self._started[id(arg)] = time.perf_counter()
        elif event in ("c_return", "c_exception"):
            t = self._started.pop(id(arg), None)
            if t is not None and time.perf_counter() - t > LONG_CALL_S:
                where = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
                self.calls.append(
                    (t, time.perf_counter(), f"{getattr(arg, '__qualname__', arg)} at {where}{_module(frame)}")
                )

    def report(self, heart: Heart) -> None:
        for g0, g1, phase, ran, queued, faults in heart.stalls:
            print(f"GUI stall of {1000 * (g1 - g0):.0f} ms while {phase}: it ran {ran:.0f} ms, waited {queued:.0f} ms")
            print(f"  for a core and read {faults} pages from disk; long calls meanwhile:")
            for c0, c1, name in self.calls:
                if c0 < g1 and c1 > g0:
                    print(f"    {1000 * (c1 - c0):6.0f} ms  {name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sae-studio-real-editor")
    p.add_argument("--steps", type=int, default=30, help="the decoder's steps (Kandinsky 2.2's default: 30)")
    p.add_argument("--size", type=int, default=512, help="the photograph's side")
    p.add_argument("--factor", type=int, default=1, help="divide every width by this, e.g. 8 (a quick check)")
    p.add_argument("--why", action="store_true", help="name the long calls into C that overlapped each GUI stall")
    p.add_argument("--until", choices=("load", "picture", "preview", "release"), help="end after this phase")
    p.add_argument(
        "--switch", action="store_true", help="start on the demo, then Load SAE folder and choose the decoder folder"
    )
    a = p.parse_args()
    from sae.memory import keep_freed_memory

    keep_freed_memory()  # as sae-studio does first
    if not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    import numpy as np
    from PIL import Image
    from PySide6.QtCore import QSettings, QThreadPool
    from PySide6.QtWidgets import QApplication

    from editor.app import import_libraries
    from editor.main_window import MainWindow
    from editor.model import EditorModel
    from sae.decoders.registry import load_decoder
    from sae.workspace import Workspace

    import_libraries()  # as sae-studio does behind its splash screen

    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clip, decoder, sae_dir = build(a.work, a.factor)
    print(f"models on disk in {time.perf_counter() - t0:.0f} s ({a.work})", flush=True)
    photo = sae_dir.parent / f"photo-{a.size}.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (a.size, a.size, 3), dtype=np.uint8)).save(photo)

    def load() -> EditorModel:
        workspace = Workspace.open(sae_dir)
        return EditorModel(workspace, load_decoder(str(decoder), workspace.backbone))

    app = QApplication.instance() or QApplication([])  # noqa: F841 (kept alive while the window runs)
    calls = LongCalls() if a.why else None
    heart, floor = Heart(), Floor()
    times: dict[str, float] = {}
    machine: list[tuple[float, float]] = []  # the idle process's gaps over SHARED_MS so far

    def row(key: str, name: str, seconds: float, note: str = "") -> None:
        times[key] = seconds
        idle, stalls = floor.take()
        machine.extend(stalls)  # a phase (the drag) spans rows: its gaps are checked against all
        gui, own = heart.worst.get(heart.phase, 0), heart.own_worst(heart.phase, machine)
        base = key.removesuffix("_s")
        times[f"{base}_gap_ms"], times[f"{base}_own_gap_ms"], times[f"{base}_floor_ms"] = gui, own, idle
        print(
            f"  {name:<44} {seconds:8.1f} s  longest gap: GUI {gui:6.1f} ms (its own <= {own:5.1f}), "
            f"idle process {idle:6.1f} ms  {note}"
        )

    settings = QSettings(str(sae_dir.parent / "settings.ini"), QSettings.Format.IniFormat)
    settings.clear()
    settings.sync()  # on disk before the load, as a user's settings already are
    heart.phase = "loading the models"
    t = time.perf_counter()
    w = MainWindow(EditorModel.demo if a.switch else load, settings=settings)
    w.show()
    _wait_until(lambda: w.model is not None, 1800)
    if a.switch:  # as a user gets there: the demo first, then Load SAE folder and a decoder folder
        row("start_s", "start on the demo models", time.perf_counter() - t)
        heart.phase = "switching to the real SAE"
        t = time.perf_counter()
        w.switcher.load_sae(sae_dir)
        _wait_until(lambda: w.model.sae_folder == sae_dir, 1800)
        row("switch_s", "Load SAE folder: the SAE and ViT-bigG-14", time.perf_counter() - t)
        heart.phase = "loading the decoder"
        t = time.perf_counter()
        w.switcher.choose_decoder(str(decoder))
        _wait_until(lambda: w.model.session.decoder is not None and not w.switcher.loading, 1800)
        row("load_s", "choose the Kandinsky 2.2 folder", time.perf_counter() - t)
    else:
        row("load_s", "load encoder, SAE and decoder", time.perf_counter() - t)
    if a.until != "load":
        run_from_picture(a, w, heart, photo, row)
    heart.timer.stop()
    floor.close()
    w.close()
    QThreadPool.globalInstance().waitForDone(600_000)
    longest = max(heart.worst.values())
    print("longest GUI-thread gap while: " + ", ".join(f"{k} {v:.1f} ms" for k, v in heart.worst.items()))
    if calls is not None:
        sys.setprofile(None)  # else the GUI thread's profiler runs on into the interpreter's exit
        calls.report(heart)
    print(" ".join(f"{k}={v:.1f}" for k, v in times.items()) + f" longest_gap_ms={longest:.1f}")


def run_from_picture(a, w, heart: Heart, photo: Path, row) -> None:
    """The phases after loading: the first picture, drags, a release and Stop (up to ``a.until``)."""
    w.generation.steps.setValue(a.steps)
    w.generation.lock_seed.setChecked(True)

    heart.phase = "first picture"
    t = time.perf_counter()
    w.result = None
    w.open_image(photo)
    _wait_until(lambda: not w.loading_image, 600)
    read = time.perf_counter() - t
    _wait_until(lambda: w.result is not None and not w.scheduler.busy, 3600)
    s = w.doc.settings
    row(
        "first_picture_s",
        "open the photograph to its first picture",
        time.perf_counter() - t,
        f"read {read:.1f} s, {s.steps} steps",
    )

    def estimate() -> None:
        per_step = w.generation.per_step.get(w.decoder_name, 0.0)
        shown = w.generation.estimate.text() if w.generation.estimate.isVisibleTo(w) else "(no estimate shown)"
        print(f"    measured {per_step:.1f} s a step; the editor says: {shown}")

    estimate()
    if a.until == "picture":
        return

    latent = w.model.session.fires(1)[0].latent
    heart.phase = "adding a slider"  # a person adds it, then presses it: events run between
    t = time.perf_counter()
    w.add_slider(latent)
    _wait(500)
    row("add_slider_s", "adding a slider (and half a second after)", time.perf_counter() - t)
    heart.phase = "drag"
    slider = w.sliders.row_for(latent)
    slider._press()

    def drag_to_preview(key: str, name: str, start: float, end: float) -> None:
        t = time.perf_counter()
        w.result = None
        for m in range(20):
            slider.slider.setValue(start + (end - start) * (m + 1) / 20)
            _wait(16)
        _wait_until(lambda: w.result is not None, 1800)
        scale = w.scheduler.last_preview_scale
        row(key, name, time.perf_counter() - t, f"{min(4, w.doc.settings.steps)} steps at {scale:g} of the side")

    drag_to_preview("first_preview_s", "drag to its first preview", 0.0, 1.0)
    estimate()
    drag_to_preview("next_preview_s", "drag on to the next preview", 1.0, 2.0)
    if a.until == "preview":
        return
    _wait_until(lambda: not w.scheduler.busy, 1800)

    heart.phase = "release"
    t = time.perf_counter()
    w.result = None
    slider._release()
    _wait(50)
    kept = w.result is None and w.canvas.after is not None
    _wait_until(lambda: w.result is not None, 3600)  # the full render (a sweep may follow in the background)
    row(
        "release_s",
        "slider release to its full render",
        time.perf_counter() - t,
        "the preview stays on screen meanwhile" * kept,
    )
    if a.until == "release":
        return

    heart.phase = "stop"
    slider._press()
    slider.slider.setValue(-1.0)
    slider._release()
    _wait_until(lambda: w.stop_button.isVisibleTo(w), 600)
    t = time.perf_counter()
    w.stop_button.click()
    _wait_until(lambda: not w.scheduler.busy, 600)
    row("stop_s", "Stop pressed to the render ended", time.perf_counter() - t, "at the next denoising step")


if __name__ == "__main__":
    main()
