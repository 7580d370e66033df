"""The package installs like one: a wheel built from the tree, installed into a fresh venv
outside it, carries the shipped models and samples, opens the editor on them and edits a sample."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # (pytest -m 'not slow' skips them)

ROOT = Path(__file__).resolve().parents[1]

EDITOR = """
import sys
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
import editor, sae
from editor.jobs import process_events_until
from editor.main_window import MainWindow
from sae.assets import SAMPLES
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
w.show()
process_events_until(lambda: w.model is not None, 120_000)
w.open_image(SAMPLES / "cat-on-grass.png")
process_events_until(lambda: w.result is not None and w.scheduler.wait(1), 300_000)
print(Path(sae.__file__).parent, Path(editor.__file__).parent, w.model.sae_folder, w.result.size)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; the dependencies come from this interpreter's
    site-packages through a path file (its own path files, among them the editable install's
    finder, are not read from there)."""
    root = tmp_path_factory.mktemp("install")
    r = subprocess.run(
        # (setuptools from the dev extras builds it: no network)
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist")]
        + [str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((root / "dist").glob("sae_studio-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sae_studio_assets/demo/sae/sae_weights.safetensors" in names
    assert "sae_studio_assets/demo/decoder/model_index.json" in names
    assert any(n.startswith("sae_studio_assets/samples/") for n in names)
    venv.create(root / "env", with_pip=False)
    env_python = root / "env" / "bin" / "python"
    site = subprocess.run(
        [str(env_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return root


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAE_STUDIO_CACHE", "SAE_STUDIO_WORK")}
    return {**env, "QT_QPA_PLATFORM": "offscreen"}


def test_the_installed_editor_opens_on_its_shipped_default_and_paints(installed, tmp_path):
    r = subprocess.run(
        [str(installed / "env" / "bin" / "python"), "-c", EDITOR, str(tmp_path / "s.ini")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    package, editor, sae_folder, size = r.stdout.split(maxsplit=3)
    site = str(installed / "env")
    assert package.startswith(site) and editor.startswith(site), "the installed package, not the source tree"
    assert sae_folder.startswith(site) and "sae_studio_assets" in sae_folder
    assert size.strip() == "(64, 64)"


def test_the_installed_command_edits_a_sample_and_writes_nothing_into_the_package(installed, tmp_path):
    before = {p: p.stat().st_mtime for p in (installed / "env").rglob("sae_studio_assets/**/*") if p.is_file()}
    sample = installed / "env" / "lib"
    sample = next(sample.rglob("sae_studio_assets/samples/cat-on-grass.png"))
    script = installed / "env" / "bin" / "sae-studio"
    r = subprocess.run(
        [str(script), "edit", str(sample), "--add", "3=2", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    edited = Image.open(tmp_path / "out" / "cat-on-grass.png")
    assert edited.size == Image.open(sample).size
    after = {p: p.stat().st_mtime for p in (installed / "env").rglob("sae_studio_assets/**/*") if p.is_file()}
    assert after == before
