"""The command line answers --help without importing the heavy libraries (torch, open_clip,
diffusers, transformers, Qt): they load only when a command runs."""

from __future__ import annotations

import subprocess
import sys

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
