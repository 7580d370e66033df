"""Render jobs off the GUI thread: the newest slider state wins, older work is cancelled or dropped.

Where a slider value travels: ``EditDocument.edits_changed`` -> ``RenderScheduler.request`` (new
job id) -> a worker thread runs ``Session.render`` -> ``finished(job_id, image)`` -> the window
shows it only if ``job_id`` is still the newest. A running decode checks its job id at every
denoising step and stops (``DecodeCancelled``) as soon as a newer request exists.

While a slider is dragged, ``PreviewThrottle`` asks for a low-step preview at most once per
interval, the interval following how long previews take, so each preview can finish before the
next one supersedes it and the picture keeps up with the drag instead of being cancelled at
every move; the release asks for the full-quality render at once.

Causal previews (what a selected latent paints on its own) share the worker, since a diffusers
pipeline must not run twice at once; they wait behind slider renders and the newest one wins.
Swapping the session's decoder or SAE waits for the running job (``when_idle``), without a nested
event loop. Everything else that takes time runs on the ``JobRunner``.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal
from shiboken6 import isValid
from superqt.utils import create_worker

from editor.priority import in_background
from sae.decoders import DecodeCancelled, DecodeSettings
from sae.errors import UserError
from sae.session import Session
from sae.steer import Edit


@dataclass
class RenderRequest:
    job_id: int
    edits: list[Edit]
    settings: DecodeSettings
    preview: bool  # a quick low-step render while a slider is dragged
    causal: tuple[int, float, str] | None = None  # (latent, value, tokens): a causal preview instead of the edit
    sweep: list[list[Edit]] | None = None  # a sweep strip: one picture per list of edits, in turn
    done: int = 0  # pictures of a sweep already delivered (a sweep that made way resumes after them)
    image: Image.Image | None = None  # a new input image to encode and cache (no render)


class RenderScheduler(QObject):
    """Runs at most one render at a time; keeps only the newest pending request."""

    started = Signal(int)  # job id
    progress = Signal(int, int, int)  # job id, step, total
    finished = Signal(int, object)  # job id, PIL image
    failed = Signal(int, str)  # job id, one-sentence message
    causal_ready = Signal(int, object)  # latent, PIL image
    sweep_ready = Signal(int, int, object)  # job id, picture index, PIL image
    image_ready = Signal(int)  # job id: the session now holds the new image
    step_timed = Signal(str, float)  # decoder name, seconds per denoising step at full size

    def __init__(self, session_getter: Callable[[], Session | None], parent: QObject | None = None):
        super().__init__(parent)
        self._session = session_getter
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.latest = 0
        self._pending: RenderRequest | None = None
        self._pending_causal: RenderRequest | None = None
        self._pending_image: RenderRequest | None = None
        self._pending_sweep: RenderRequest | None = None
        self.latest_causal = self.latest_sweep = 0
        self._running = False
        self._running_preview = False  # the running job is a drag preview (a later move waits for it)
        self._running_for_user = False  # the running job is a render or an image the user waits for
        self._closed = False
        self._worker = None
        self._when_idle: list[Callable[[], None]] = []
        self.last_preview_ms = 0.0  # how long the last finished drag preview took
        self.last_preview_scale = 1.0  # and the share of the decoder's side it painted at

    def request(self, edits: list[Edit], settings: DecodeSettings, preview: bool = False) -> int:
        with self._lock:
            job = RenderRequest(next(self._ids), list(edits), settings, preview)
            self.latest = job.job_id
            self._pending = job
            start = not self._running
        if start:
            self._start_next()
        return job.job_id

    def request_image(self, image: Image.Image) -> int:
        """Encode and cache a new input image on the worker (the prefix of a large encoder takes
        seconds); any render in flight is for the old image and is cancelled."""
        with self._lock:
            job = RenderRequest(next(self._ids), [], DecodeSettings(), False, image=image)
            self.latest = job.job_id
            self._pending_image, self._pending = job, None
            start = not self._running
        if start:
            self._start_next()
        return job.job_id

    def request_causal(self, latent: int, value: float, settings: DecodeSettings, tokens: str = "all") -> int:
        with self._lock:
            job = RenderRequest(next(self._ids), [], settings, False, (latent, value, tokens))
            self.latest_causal = job.job_id
            self._pending_causal = job
            start = not self._running
        if start:
            self._start_next()
        return job.job_id

    def request_sweep(self, edit_lists: list[list[Edit]], settings: DecodeSettings) -> int:
        """Paint one picture per list of edits, after any slider render or causal preview (which
        the sweep makes way for at its next step); the newest sweep replaces an older one."""
        with self._lock:
            job = RenderRequest(next(self._ids), [], settings, False, sweep=[list(e) for e in edit_lists])
            self.latest_sweep = job.job_id
            self._pending_sweep = job
            start = not self._running
        if start:
            self._start_next()
        return job.job_id

    @property
    def busy(self) -> bool:
        return self._running

    @property
    def preview_running(self) -> bool:
        """A drag preview runs: the next one waits for it. A full render does not make a drag wait,
        since the drag's newer state supersedes it (on a CPU at real size it would take minutes)."""
        return self._running and self._running_preview

    def user_waits(self) -> bool:
        """A render or new image the user waits for runs or is queued (causal previews and sweeps
        do not count). Read from any thread."""
        waiting = self._pending is not None or self._pending_image is not None
        return waiting or (self._running and self._running_for_user)

    def yield_to_renders(self, poll_s: float = 0.05) -> None:
        """Hold the calling worker thread while the user waits for a render: background work
        (calibrating a new slider) calls this between its steps, so on a machine whose cores a
        render fills, the render is not slowed by it."""
        while not self._closed and self.user_waits():
            time.sleep(poll_s)

    def stop(self) -> bool:
        """Stop what runs at its next denoising step or pass and drop what waits (renders, causal
        previews, sweeps): the user wants the machine back. The picture shown stays. False when
        nothing ran or waited."""
        with self._lock:
            had = self._running or any(
                j is not None for j in (self._pending, self._pending_causal, self._pending_sweep)
            )
            self._pending = self._pending_causal = self._pending_sweep = None
            self.latest = self.latest_causal = self.latest_sweep = next(self._ids)  # the running job is stale
        return had

    def when_idle(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the GUI thread once no job runs (at once if none does), before any
        waiting job starts: the moment to change what the jobs use."""
        if self._running:
            self._when_idle.append(action)
        else:
            action()

    def shutdown(self) -> None:
        """The window closes: start nothing more, and let a running decode stop at its next step."""
        with self._lock:
            self._closed = True
            self._pending = self._pending_causal = self._pending_image = self._pending_sweep = None
            self.latest = self.latest_causal = self.latest_sweep = -1

    def is_stale(self, job_id: int) -> bool:
        return job_id not in (self.latest, self.latest_causal, self.latest_sweep)

    def _start_next(self) -> None:
        if not isValid(self) or self._closed:
            return  # the window closed: start nothing more
        self._running = False
        while self._when_idle:
            self._when_idle.pop(0)()
        if self._running:
            return  # an idle action asked for a render, which has started
        with self._lock:
            if self._pending_image is not None:
                job, self._pending_image = self._pending_image, None
            elif self._pending is not None:
                job, self._pending = self._pending, None
            elif self._pending_causal is not None:
                job, self._pending_causal = self._pending_causal, None
            else:
                job, self._pending_sweep = self._pending_sweep, None
            if job is None:
                self._running = False
                return
            self._running = True
            self._running_preview = job.preview
            self._running_for_user = job.causal is None and job.sweep is None
        self._worker = create_worker(in_background(self._run), job, _start_thread=False, _ignore_errors=True)
        self._worker.returned.connect(self._done)
        self._worker.errored.connect(lambda e, job=job: self._error(job, e))
        self._worker.finished.connect(self._start_next)
        self.started.emit(job.job_id)
        start_worker(self._worker)

    def _run(self, job: RenderRequest) -> tuple[RenderRequest, Image.Image | None]:
        session = self._session()
        if session is None:
            return job, None
        if job.image is not None:
            session.set_image(job.image)
            return job, job.image
        if session.current is None and job.causal is None:
            return job, None
        waiting = job.causal is not None or job.sweep is not None  # makes way for slider renders

        marks: list[float] = []  # when each step ended: the per-step time of a full-size render

        def on_step(step: int, total: int) -> None:
            if step > 0 and not waiting and job.settings.scale == 1.0:  # (step 0: a poll between passes)
                marks.append(time.perf_counter())
                if len(marks) >= 2:
                    self.step_timed.emit(job.settings.decoder, (marks[-1] - marks[0]) / (len(marks) - 1))
            if (
                not isValid(self)
                or self.is_stale(job.job_id)
                or (waiting and (self._pending or self._pending_image))
                or (job.sweep is not None and self._pending_causal)
            ):
                raise DecodeCancelled()  # a newer state, or a slider render waiting behind a preview
            if not waiting:
                self.progress.emit(job.job_id, step, total)

        try:
            if job.causal is not None:
                latent, value, tokens = job.causal
                return job, session.causal_preview(latent, value, job.settings, on_step, tokens=tokens)
            if job.sweep is not None:
                for i in range(job.done, len(job.sweep)):
                    on_step(0, 1)  # a slider render waiting goes first
                    self.sweep_ready.emit(job.job_id, i, session.render(job.sweep[i], job.settings, on_step))
                    job.done = i + 1
                return job, None
            t0 = time.perf_counter()
            image = session.render(job.edits, job.settings, on_step)
            if job.preview:
                self.last_preview_ms = 1000 * (time.perf_counter() - t0)
                self.last_preview_scale = job.settings.scale
            return job, image
        except DecodeCancelled:
            with self._lock:  # a preview or sweep that made way for a slider render runs again after it
                if job.causal is not None and not self.is_stale(job.job_id) and self._pending_causal is None:
                    self._pending_causal = job
                if job.sweep is not None and not self.is_stale(job.job_id) and self._pending_sweep is None:
                    self._pending_sweep = job
            return job, None

    def _done(self, result: tuple[RenderRequest, Image.Image | None]) -> None:
        job, image = result
        if not isValid(self):
            return  # the window closed while this job ran: nobody to tell
        if job.image is not None:
            self.image_ready.emit(job.job_id)  # even if newer work waits: the session changed
            return
        if image is None or self.is_stale(job.job_id):
            return
        if job.causal is not None:
            self.causal_ready.emit(job.causal[0], image)
        else:
            self.finished.emit(job.job_id, image)

    def _error(self, job: RenderRequest, error: Exception) -> None:
        if not isValid(self):
            return  # the window closed while this job ran (its progress had nowhere to go)
        if isinstance(error, UserError):
            message = str(error)
        else:  # one sentence and what to change; the window stays as it was
            first = (str(error).splitlines() or [""])[0][:200]
            message = (
                f"Rendering failed ({type(error).__name__}: {first}); the picture and sliders are kept: "
                "try fewer steps, another decoder, or a smaller picture."
            )
        self.failed.emit(job.job_id, message)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait, handling events, until no render is running (for tests and benches)."""
        return process_events_until(lambda: not self._running, timeout_ms)


_ALIVE: set = set()  # workers that run, kept referenced until they finish even if their window has gone


def start_worker(worker) -> None:
    """Start a superqt worker and keep it alive until it finishes: a worker whose Python object is
    dropped mid-run (its window closed) would emit from a deleted Qt object.

    Every started worker gets a thread of its own. Qt's shared pool has one per core, and a
    background job that pauses while a render runs (a slider's calibration) would otherwise hold
    a thread the render is queued for: on two cores, two new sliders froze rendering for good."""
    _ALIVE.add(worker)
    # weakly: a lambda holding the worker, kept by the worker's own signal inside Qt, is a cycle
    # Python's collector cannot see, and the worker (with the models its function holds) would live on
    ref = weakref.ref(worker)
    worker.finished.connect(lambda: _ALIVE.discard(ref()))
    pool = QThreadPool.globalInstance()
    pool.setMaxThreadCount(max(pool.maxThreadCount(), len(_ALIVE)))
    worker.start()


def _once(fn: Callable, *args) -> Callable[[], object]:
    """``fn(*args)`` as a call that lets go of ``fn`` and ``args`` when it starts. A worker can
    outlive its run: superqt points ``warnings.showwarning`` at a lambda holding the worker, and
    two workers running at once can leave one of them there. Whatever ``fn`` holds (the model an
    SAE switch replaces) must not live on with it."""
    box = [fn, args]

    def run():
        f, a = box
        box.clear()
        return f(*a)

    return run


class JobRunner(QObject):
    """The editor's jobs other than renders (loading models, an SAE or a decoder, searches,
    heatmaps, inducing a slider) on worker threads (superqt workers). Per kind only the newest
    job's result is delivered, so a search typed on supersedes the one before, and none reaches a
    window that is gone."""

    _ids = itertools.count(1)
    _kinds: dict[int, tuple[int, str]] = {}  # running job id -> (runner, kind)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._latest: dict[str, int] = {}

    def run(
        self,
        kind: str,
        fn: Callable,
        *args,
        done: Callable | None = None,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        job = self._latest[kind] = next(self._ids)
        worker = create_worker(_once(in_background(fn), *args), _start_thread=False, _ignore_errors=True)
        current = lambda: isValid(self) and self._latest.get(kind) == job  # noqa: E731
        if done is not None:
            worker.returned.connect(lambda result: done(result) if current() else None)
        if failed is not None:
            worker.errored.connect(lambda error: failed(error) if current() else None)
        worker.finished.connect(lambda: JobRunner._kinds.pop(job, None))
        JobRunner._kinds[job] = (id(self), kind)
        start_worker(worker)

    def busy(self, kind: str) -> bool:
        return (id(self), kind) in list(JobRunner._kinds.values())


class PreviewThrottle(QObject):
    """Calls ``request`` at most once per ``interval_ms`` while ``poke`` keeps coming (leading and
    trailing edge), and never while ``busy()`` (a render still running finishes first, rather than
    being cancelled by every move); the interval follows ``measured`` preview times (1.2x, 40 to 500 ms)."""

    def __init__(
        self,
        request: Callable[[], None],
        busy: Callable[[], bool] = lambda: False,
        parent: QObject | None = None,
        interval_ms: int = 60,
    ):
        super().__init__(parent)
        self._request, self._busy = request, busy
        self.interval_ms = interval_ms
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def poke(self) -> None:
        self._dirty = True
        if not self._timer.isActive():
            self._fire()

    def measured(self, ms: float) -> None:
        self.interval_ms = int(min(500, max(40, 1.2 * ms)))

    def cancel(self) -> None:
        """The drag ended: drop the pending preview (the full render supersedes it)."""
        self._dirty = False
        self._timer.stop()

    def _fire(self) -> None:
        if self._dirty and self._busy():
            self._timer.start(10)  # look again shortly: the running render is nearly done
            return
        if self._dirty:
            self._dirty = False
            self._request()
            self._timer.start(self.interval_ms)


def process_events_until(done: Callable[[], bool], timeout_ms: int) -> bool:
    """Keep the GUI responsive while waiting for ``done()`` (tests, closing a window)."""
    from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QThread

    deadline = QDeadlineTimer(timeout_ms)
    while not done() and not deadline.hasExpired():
        QCoreApplication.processEvents()
        QThread.msleep(5)
    return done()
