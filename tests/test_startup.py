"""The command line answers --help without importing the heavy libraries (torch, open_clip,
diffusers, transformers, Qt): they load only when a command runs. The editor imports them all
before its window shows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
from sae.cli import COMMANDS, main
for argv in [["--help"]] + [[name, "--help"] for name in COMMANDS]:
    try:
        main(argv)
    except SystemExit:
        pass
heavy = ("torch", "open_clip", "diffusers", "transformers", "PySide6", "numpy")
print("LOADED", sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy}))
"""


def test_every_help_answers_without_the_heavy_imports():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: sae-studio" in out.stdout and "usage: sae-studio edit" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


EDITOR = """
import sys, threading
elsewhere = []  # modules first imported by a thread other than the GUI thread

def hook(event, args):
    if event == "import" and threading.current_thread() is not threading.main_thread():
        elsewhere.append(args[0])

sys.addaudithook(hook)
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
shown = []

def first_picture():
    windows = [w for w in app.topLevelWidgets() if type(w).__name__ == "MainWindow" and w.isVisible()]
    if windows and windows[0].result is not None and windows[0].scheduler.wait(1):
        shown.append(windows[0].result.size)
        windows[0].close()
        app.quit()

timer = QTimer()
timer.timeout.connect(first_picture)
timer.start(50)
from sae.cli import main
main([])
print("PICTURE", shown)
print("ELSEWHERE", sorted(set(elsewhere)))
"""


def test_the_editor_imports_its_libraries_before_its_window_so_no_loading_thread_stalls_it(tmp_path):
    """``sae-studio`` as a user starts it, to the sample's first picture: torch, open_clip and
    diffusers are imported behind the splash screen, none by the threads that load models and
    render while the window runs (their imports held the GIL in stretches of 36-65 ms)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))  # not the user's settings
    out = subprocess.run([sys.executable, "-c", EDITOR], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("PICTURE", "ELSEWHERE")))
    assert lines["PICTURE"] != "[]", "the editor never painted its first picture"
    assert lines["ELSEWHERE"] == "[]"


ALLOCATIONS = """
import resource, sys, threading
from sae.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
import torch
def step():  # blocks of a decoder step's sizes, three alive at a time
    alive = []
    for mb in (24, 24, 8, 8, 8, 16):
        alive.append(torch.ones(mb << 18))
        del alive[:-3]
def worker():
    faults = []
    for _ in range(24):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print("FAULTS", *faults)
thread = threading.Thread(target=worker)
thread.start()
thread.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator's policy is set on Linux (glibc) only")
def test_a_worker_reuses_freed_memory_instead_of_faulting_in_fresh_pages():
    """Any ``sae-studio`` command keeps torch's freed blocks for reuse: a render thread's step
    touches no fresh pages once the heap has grown (glibc's default gave 4,000-12,000 faults a step to
    this pattern, 1.6 million to a real-size decoder step, a fifth of its time). The first steps
    grow the kept heap (up to nine of them, as other threads' allocations fall); the last eight
    touch nothing new."""
    out = subprocess.run([sys.executable, "-c", ALLOCATIONS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    faults = [int(n) for n in out.stdout.split("FAULTS ")[1].split()]
    pages = 8 * (24 + 24 + 8 + 8 + 8 + 16) * 256  # 4 KB pages allocated in the last eight steps
    assert sum(faults[-8:]) < pages / 100, f"page faults a step: {faults}"
