"""Start-up times: ``sae-studio --help``, each command's ``--help``, the editor's splash screen
and window shown on the embedded default, and its first picture (the sample ``sae-studio``
opens) decoded.

Each ``--help`` is a fresh process, timed against a bare ``python -c pass`` run beside it (the
baseline, so a busy machine shows as a busy baseline); the window is timed in one fresh process
under Qt's offscreen platform. The target: every ``--help`` within 1 s.

    python bench/startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WINDOW = """
import time
t0 = time.perf_counter()
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
from editor.app import import_libraries, show_splash
splash = show_splash()
splashed = time.perf_counter() - t0
import_libraries()  # as sae-studio does behind its splash screen
from editor.jobs import process_events_until
from editor.main_window import MainWindow
import tempfile, os
settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
w = MainWindow(settings=settings)
w.show()
splash.finish(w)
app.processEvents()
shown = time.perf_counter() - t0
from sae.assets import SAMPLES
w.open_image(SAMPLES / "cat-on-grass.png")  # as sae-studio with no image does
process_events_until(lambda: w.result is not None and w.scheduler.wait(1), 300_000)
print(splashed, shown, time.perf_counter() - t0)
"""


def timed(argv: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each --help (the fastest is kept)")
    args = parser.parse_args()
    from sae.cli import COMMANDS

    py = sys.executable
    base = min(timed([py, "-c", "pass"]) for _ in range(args.repeat))
    print(f"{'what':<28} {'seconds':>8} {'x python -c pass':>17}")
    print(f"{'python -c pass (baseline)':<28} {base:>8.2f} {1.0:>17.1f}")
    for argv in [["--help"]] + [[name, "--help"] for name in COMMANDS]:
        t = min(timed([py, "-m", "sae", *argv]) for _ in range(args.repeat))
        print(f"{'sae-studio ' + ' '.join(argv):<28} {t:>8.2f} {t / base:>17.1f}")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([py, "-c", WINDOW], capture_output=True, text=True, check=True, env=env)
    splashed, shown, decoded = (float(x) for x in out.stdout.split()[-3:])
    print(f"{'editor: splash shown':<28} {splashed:>8.2f} {splashed / base:>17.1f}")
    print(f"{'editor: window shown':<28} {shown:>8.2f} {shown / base:>17.1f}")
    print(f"{'editor: first picture':<28} {decoded:>8.2f} {decoded / base:>17.1f}")


if __name__ == "__main__":
    main()
