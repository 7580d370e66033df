"""The GUI thread comes first. A real-size encoder or decoder keeps every core busy with torch's
threads (a convolution releases the GIL but not the cores); at equal priority the operating
system then lets the GUI thread wait its turn for tens of milliseconds. Each background job
therefore lowers every other thread of the process (torch's pools included) to
``BACKGROUND_NICE``: they still get every cycle the GUI thread leaves, but yield when it wakes.
Linux only, where a thread's niceness is its own; elsewhere nothing changes."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from functools import wraps

BACKGROUND_NICE = 10  # the niceness of every thread but the GUI thread (0: the default)
_TASKS = "/proc/self/task"


def lower_background_threads(gui_thread: int | None = None) -> int:
    """Lower every thread of this process but ``gui_thread`` (a native id; the main thread when
    None) and Qt's own to BACKGROUND_NICE; returns how many were lowered. A thread already lower
    stays so."""
    if not sys.platform.startswith("linux"):
        return 0
    gui = threading.main_thread().native_id if gui_thread is None else gui_thread
    try:
        tasks = [int(name) for name in os.listdir(_TASKS)]
    except OSError:
        return 0
    lowered = 0
    for tid in tasks:
        if tid == gui or _is_qts_own(tid):
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < BACKGROUND_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
                lowered += 1
        except OSError:  # the thread has ended, or the system refuses: it keeps its priority
            continue
    return lowered


def _is_qts_own(tid: int) -> bool:
    """Qt's own threads (the window system's event reader: QXcbEventQueue) keep their priority, so
    input reaches the GUI thread as soon as before; its pooled job threads are named otherwise."""
    try:
        with open(f"{_TASKS}/{tid}/comm") as f:
            return f.read().startswith("Q")
    except OSError:
        return False


def in_background(fn: Callable) -> Callable:
    """``fn`` run after lowering the background threads: torch's pools are made or grown by the
    first job that needs them, so each job lowers whatever exists when it starts."""

    @wraps(fn)
    def run(*args, **kwargs):
        lower_background_threads()
        return fn(*args, **kwargs)

    return run
