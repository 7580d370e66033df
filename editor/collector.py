"""Python's cyclic garbage collector and the GUI thread. A full collection walks every tracked
object while holding the GIL, whichever thread triggers it: over the libraries' ~450,000 objects
and a model being built (a real-size encoder and decoder add ~280,000 more) each pass stalls the
GUI thread for 100 to 400 ms. So a model loads with automatic collection paused, and what exists
once it has loaded (libraries, models, a wide SAE's labels) is frozen: exempt from later passes,
still freed by reference counting."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from functools import wraps

_lock = threading.Lock()
_loading = 0  # loads running now; collection resumes when the last one ends


def while_loading(load: Callable) -> Callable:
    """``load`` run with automatic collection paused, then everything alive frozen. Nothing is
    collected (that would be one long pass): a load leaves a few hundred small cycles at most."""

    @wraps(load)
    def run(*args, **kwargs):
        global _loading
        with _lock:
            _loading += 1
            gc.disable()
        try:
            return load(*args, **kwargs)
        finally:
            with _lock:
                _loading -= 1
                gc.freeze()
                if _loading == 0:
                    gc.enable()

    return run


def release_replaced() -> None:
    """After a model is replaced: unfreeze, collect once so the old model's reference cycles are
    freed, and freeze again (one pass, at a switch the user asked for)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
