"""The desktop editor driven through real widgets (offscreen Qt), on quick demo models and a tiny decoder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading

import numpy as np
import pytest
import torch
from helpers import copy_quick_demo
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent

from sae.backbone import load_backbone
from sae.model import SparseAutoencoder
from sae.steer import Edit

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def quick_models(quick_demo, tmp_path_factory):
    from sae.features import build_index

    root, images = copy_quick_demo(quick_demo, tmp_path_factory.mktemp("editor"), 32)
    bb = load_backbone(str(root / "demo" / "clip"))
    sae = SparseAutoencoder.load(root / "demo" / "sae")
    split = bb.at_layer(sae.metadata.layer)
    index = build_index(root / "demo" / "sae", split, sae, images, progress=False)
    from sae.demo.clip import to_pixels
    from sae.demo.data import world_data
    from sae.demo.supplies import demo_vocabulary
    from sae.labels import label_sae

    label_sae(
        root / "demo" / "sae",
        split,
        sae,
        index.max.clamp_min(1e-3),
        to_pixels(world_data(8, seed=5).images),
        demo_vocabulary(),
    )
    return root, images


@pytest.fixture
def window(qtbot, quick_models, tmp_path):
    w = _new_window(qtbot, quick_models[0], tmp_path)
    qtbot.waitUntil(lambda: w.model is not None, timeout=30_000)
    return w


def _new_window(qtbot, root, tmp_path):
    from editor.main_window import MainWindow
    from editor.model import EditorModel
    from sae.decoders.registry import load_decoder
    from sae.workspace import Workspace

    def load():
        workspace = Workspace.open(root / "demo" / "sae")
        return EditorModel(workspace, load_decoder(str(root / "decoder"), workspace.backbone))

    w = MainWindow(load, settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.generation.steps.setValue(3)
    return w


def _open(window, qtbot, path):
    window.open_image(path)
    qtbot.waitUntil(lambda: not window.loading_image, timeout=30_000)


def _writes_while_waiting(qtbot, action) -> int:
    """The write calls this (the GUI) thread makes while ``action`` runs and events flow for 50 ms."""

    def count() -> int:
        with open(f"/proc/self/task/{threading.get_native_id()}/io") as f:
            return int(dict(line.split(": ") for line in f.read().splitlines())["syscw"])

    before = count()
    action()
    qtbot.wait(50)
    return count() - before


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="a thread's own write count is Linux's")
def test_remembered_settings_reach_the_disk_from_a_thread_of_their_own(qtbot, tmp_path):
    """QSettings writes its file from the GUI thread's event loop and waits for the disk
    (fdatasync): beside a real-size model load that froze the window 50-120 ms. The editor's
    preferences are written by a thread of their own, and the next session reads them."""
    from editor.preferences import Preferences

    path = str(tmp_path / "settings.ini")
    plain = QSettings(path, QSettings.Format.IniFormat)
    idle = _writes_while_waiting(qtbot, lambda: None)  # the event loop's own wake-ups
    assert _writes_while_waiting(qtbot, lambda: plain.setValue("probe", 1)) > idle  # QSettings writes here
    preferences = Preferences(QSettings(path, QSettings.Format.IniFormat))

    def remember():
        preferences.set_value("recent", ["a.png"])
        preferences.set_value("steps/demo", 5)

    assert _writes_while_waiting(qtbot, remember) == idle
    preferences.flush()
    assert preferences.value("recent", type=list) == ["a.png"] and preferences.value("probe") in (1, "1")
    saved = QSettings(path, QSettings.Format.IniFormat)
    assert saved.value("recent", type=list) == ["a.png"] and int(saved.value("steps/demo")) == 5


@contextlib.contextmanager
def _events(widget, kind):
    """The events of ``kind`` that ``widget`` receives inside the block (a list, filled as they come)."""
    from PySide6.QtCore import QObject

    seen = []

    class Count(QObject):
        def eventFilter(self, obj, event):
            if obj is widget and event.type() == kind:
                seen.append(event.type())
            return False

    counter = Count()
    widget.installEventFilter(counter)
    try:
        yield seen
    finally:
        widget.removeEventFilter(counter)


def test_open_add_slider_render_and_undo(window, qtbot, quick_models):
    _root, images = quick_models
    path = sorted(images.glob("*.png"))[0]
    _open(window, qtbot, path)
    assert window.features.fires.count() > 0
    qtbot.waitUntil(lambda: window.result is not None, timeout=30_000)
    first = np.asarray(window.result)
    assert window.canvas.after_caption.startswith("decoded, no edits")  # not to be read as an edit
    latent = window.model.session.fires(1)[0].latent
    window.add_slider(latent)
    row = window.sliders.row_for(latent)
    assert row is not None and row.unit > 0
    window.result = None
    row.slider.setValue(-2.0)  # lower the strongest feature a lot
    row.committed.emit(row, 0.0, row.slider.value())
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    edited = np.asarray(window.result)
    assert not np.array_equal(first, edited) and window.canvas.after_caption == "edited"
    window.undo.undo()  # the slider move
    assert row.slider.value() == pytest.approx(0.0)
    window.undo.undo()  # the add
    assert window.sliders.row_for(latent) is None


def test_exported_preset_replays_bit_identically_in_the_cli(window, qtbot, quick_models, tmp_path):
    """... and both keep a cut-out's transparency in the files they save."""
    from sae.cli import main

    root, images = quick_models
    picture = Image.open(sorted(images.glob("*.png"))[1]).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, picture.width).astype(np.uint8), (picture.height, 1))
    picture.putalpha(Image.fromarray(alpha))  # clear on the left, opaque on the right
    picture.save(tmp_path / "cut-out.png")
    pics = [None, tmp_path / "cut-out.png"]
    _open(window, qtbot, pics[1])
    latent = window.model.session.fires(1)[0].latent
    window.add_slider(latent)
    row = window.sliders.row_for(latent)
    row.slider.setValue(1.0)
    row.committed.emit(row, 0.0, row.slider.value())
    qtbot.waitUntil(lambda: window.scheduler.wait(1) and window.result is not None, timeout=30_000)
    window.request_render()
    assert window.scheduler.wait(30_000)
    preset = window.current_preset()
    preset.decoder.decoder = str(root / "decoder")
    preset.save(tmp_path / "p.json")
    gui = np.asarray(window.result)
    assert (
        main(
            [
                "edit",
                str(pics[1]),
                "--preset",
                str(tmp_path / "p.json"),
                "--sae",
                str(root / "demo" / "sae"),
                "--model",
                str(root / "demo" / "clip"),
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    cli = Image.open(tmp_path / "out" / pics[1].name)
    assert np.array_equal(gui, np.asarray(cli.convert("RGB")))
    window.files.save_result(tmp_path / "saved.png")
    for saved in (cli, Image.open(tmp_path / "saved.png")):
        assert saved.mode == "RGBA" and np.array_equal(np.asarray(saved)[..., 3], alpha)
        assert np.array_equal(np.asarray(saved)[..., :3], gui)


def test_a_slider_edits_the_tokens_its_feature_fires_on(window, qtbot, quick_models):
    """A new slider starts on the tokens where its latent fires in the index (the patches alone for
    most latents); a choice of tokens travels in the preset and survives undo and redo of a
    removal; a brushed slider acts on its painted patches."""
    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[2])
    index = window.model.index
    latent = next(f.latent for f in window.model.session.fires(40) if index.home_tokens(f.latent) == "patches")
    window.add_slider(latent)
    row = window.sliders.row_for(latent)
    assert row.token_choice() == "patches" and row.tokens.currentText() == "patches"
    assert window.current_preset().edits[0].tokens == "patches"
    row.tokens.setCurrentIndex(row.tokens.findData("class"))
    assert window.current_preset().edits[0].tokens == "class"
    window.sliders.select(row)
    window.remove_slider(row)
    assert window.sliders.row_for(latent) is None
    window.undo.undo()
    row = window.sliders.row_for(latent)
    assert row is not None and row.token_choice() == "class"
    window.sliders.select(row)
    window._painted(3)
    assert not row.tokens.isEnabled()
    edit = window.current_preset().edits[0]
    assert edit.mask == (3,) and edit.tokens == "patches"
    window.undo.undo()  # the stroke
    assert row.tokens.isEnabled() and window.current_preset().edits[0].tokens == "class"


def _drop(window, path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)


def test_a_picture_is_read_off_the_gui_thread_and_the_newest_open_wins(window, qtbot, quick_models):
    _root, images = quick_models
    first, second, third = sorted(images.glob("*.png"))[:3]
    _open(window, qtbot, first)
    window.open_image(second)
    assert window.image_path == first and window.loading_image  # not read yet; no renders meanwhile
    window.open_image(third)
    qtbot.waitUntil(lambda: not window.loading_image, timeout=30_000)
    assert window.image_path == third and window.model.session.current.image.size == Image.open(third).size


def test_background_jobs_that_make_way_for_renders_cannot_starve_them(window, qtbot, quick_models):
    """Jobs that pause while a render runs (slider calibrations) on every thread of Qt's pool: the
    render still gets a thread (with one thread per core, two new sliders used to freeze it)."""
    import time

    from PySide6.QtCore import QThreadPool

    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[0])
    window.scheduler.wait(30_000)

    def making_way() -> None:
        deadline = time.monotonic() + 30
        while not window.scheduler.user_waits() and time.monotonic() < deadline:
            time.sleep(0.005)
        window.scheduler.yield_to_renders()

    pool = QThreadPool.globalInstance()
    threads = pool.maxThreadCount()
    for i in range(threads):
        window.jobs.run(f"making way {i}", making_way)
    qtbot.waitUntil(lambda: pool.activeThreadCount() >= threads, timeout=10_000)
    window.result = None
    window.request_render()
    qtbot.waitUntil(lambda: window.result is not None, timeout=30_000)


def test_bad_drops_leave_a_message_and_a_live_window(window, qtbot, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _drop(window, tmp_path / "notes.txt")
    assert "neither an image" in window._last_error
    (tmp_path / "fake.png").write_text("not a png")
    _drop(window, tmp_path / "fake.png")  # read on a worker: the message comes when it is done
    qtbot.waitUntil(lambda: "not an image" in window._last_error or "could not be decoded" in window._last_error)
    assert not window.loading_image  # renders are not held back by the file that failed
    (tmp_path / "bad.json").write_text("{")
    _drop(window, tmp_path / "bad.json")
    assert "not valid JSON" in window._last_error
    window.run_search("cat")  # the window still works (the search runs on a worker thread)
    qtbot.waitUntil(lambda: window.features.results.count() > 0, timeout=10_000)


def test_preset_for_another_sae_is_refused(window, qtbot, tmp_path, quick_models):
    from sae import presets
    from sae.steer import Edit

    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[2])
    presets.Preset(presets.SaeIdentity("0" * 64, 16, 8, "other", 1), [Edit(1, "add", 1.0)]).save(tmp_path / "o.json")
    window.files.import_preset(tmp_path / "o.json")
    assert "made for another SAE" in window._last_error
    assert window.sliders.rows == []


def test_selecting_a_feature_shows_its_heatmap_and_its_causal_preview(window, qtbot, quick_models):
    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[3])
    qtbot.waitUntil(lambda: window.scheduler.wait(1) and window.result is not None, timeout=30_000)
    firing = window.model.session.fires(1)[0]
    window.features.fires.setCurrentRow(0)
    qtbot.waitUntil(lambda: window.canvas.heatmap is not None, timeout=10_000)  # computed on a worker thread
    grid = window.canvas.heatmap
    assert len(grid) == window.canvas.view.grid
    # the patches' own activations; the image-level one is their max or the class token's, if higher
    patches = window.model.session.heatmap(firing.latent)
    assert torch.allclose(torch.tensor(grid), patches, rtol=1e-5)
    assert max(max(r) for r in grid) <= firing.activation + 1e-5
    assert window.canvas.heatmap_whole == pytest.approx(window.model.current_activation(firing.latent))
    qtbot.waitUntil(
        lambda: window.features.causal.pixmap() is not None and not window.features.causal.pixmap().isNull(),
        timeout=30_000,
    )
    assert f"#{firing.latent} on its own" in window.features.causal_title.text()


def test_decoder_choice_loads_a_folder_and_refuses_a_mismatched_hub_decoder(
    window, qtbot, quick_models, monkeypatch, tmp_path
):
    from sae.decoders import default_steps, default_strength

    root, images = quick_models
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _open(window, qtbot, sorted(images.glob("*.png"))[4])
    assert window.generation.strength.value() == default_strength("demo") == 0.9
    assert window.generation.keep_rest.isChecked() and window.current_preset().decoder.region == "edited"
    window.generation.keep_rest.setChecked(False)  # repaint the whole image: presets and the next run keep it
    assert window.current_preset().decoder.region == "whole"
    window.generation.strength.setValue(0.7)
    window.switcher.choose_decoder(str(root / "decoder"))
    qtbot.waitUntil(lambda: window.decoder_name == str(root / "decoder"), timeout=30_000)
    assert window.current_preset().decoder.decoder == str(root / "decoder")
    # Each decoder keeps its own steps and strength: the folder starts at the hub defaults, the
    # demo's 3 steps and 0.7 are kept.
    assert window.generation.steps.value() == default_steps(str(root / "decoder")) == 30
    assert window.generation.strength.value() == default_strength(str(root / "decoder")) == 0.5
    assert int(window.settings.value("steps/demo")) == 3
    assert float(window.settings.value("strength/demo")) == 0.7
    window.generation.steps.setValue(5)
    window.generation.strength.setValue(0.4)
    window.close()
    saved = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)  # what the next session reads
    assert int(saved.value(f"steps/{root / 'decoder'}")) == 5
    assert float(saved.value(f"strength/{root / 'decoder'}")) == 0.4
    assert saved.value("region") == "whole" and int(saved.value("steps/demo")) == 3
    before = window.model.session.decoder
    window._last_error = ""
    window.switcher.choose_decoder("kandinsky-2.2")
    qtbot.waitUntil(lambda: "paints 1280-d" in window._last_error, timeout=30_000)
    assert window.model.session.decoder is before and window.decoder_name == str(root / "decoder")


def test_a_slow_full_render_is_announced_from_its_measured_step_time(window, qtbot, quick_models):
    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[0])
    g, name = window.generation, window.decoder_name
    g.keep_rest.setChecked(False)  # a whole-picture img2img: its steps run even without an edit
    window.request_render(preview=False)
    qtbot.waitUntil(lambda: name in g.per_step, timeout=30_000)  # measured on the full render
    assert 0 < g.per_step[name] < 5 and not g.estimate.isVisibleTo(window)  # the demo decoder is quick
    g.show_timing(name, 12.0)  # a real-size decoder on a CPU: 12 s a step
    g.steps.setValue(30)
    g.strength.setValue(0.5)
    assert g.estimate.isVisibleTo(window) and "about 3 min here (12.0 s a step)" in g.estimate.text()
    g.steps.setValue(2)  # 1 step: 12 s, not worth a warning
    assert not g.estimate.isVisibleTo(window)


def test_an_sae_of_the_wrong_width_is_refused_and_the_old_one_kept(window, qtbot, tmp_path):
    from sae.sae_config import SaeConfig, SaeMetadata

    SparseAutoencoder(SaeConfig(d_in=7, d_sae=28, k=4)).save(tmp_path / "narrow")
    old = window.model
    window._last_error = ""
    window.switcher.load_sae(tmp_path / "narrow")
    qtbot.waitUntil(lambda: window._last_error != "", timeout=30_000)
    assert "7" in window._last_error and window.model is old
    # weights of another width put beside this SAE's index
    shutil.copytree(old.sae_folder / "index", tmp_path / "stale" / "index")
    sae, meta = old.workspace.sae, SaeMetadata(layer=old.workspace.sae.metadata.layer)  # on the editor's encoder
    SparseAutoencoder(SaeConfig(d_in=sae.d_in, d_sae=sae.d_sae + 8, k=4), meta).save(tmp_path / "stale")
    window._last_error = ""
    window.switcher.load_sae(tmp_path / "stale")
    qtbot.waitUntil(lambda: window._last_error != "", timeout=30_000)
    assert "was made for an SAE with" in window._last_error and window.model is old


def test_an_sae_on_another_encoder_opens_on_that_encoder_without_a_decoder_that_cannot_paint_it(
    window, qtbot, quick_models, tiny_clip, tmp_path
):
    from editor.collector import tensors_of
    from editor.main_window import NO_DECODER
    from sae.sae_config import SaeConfig, SaeMetadata

    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[0])
    old = window.model.session.backbone.model_id
    width = load_backbone(str(tiny_clip)).width
    meta = SaeMetadata(backbone=f"local-dir:{tiny_clip}", layer=6)
    SparseAutoencoder(SaeConfig(d_in=width, d_sae=4 * width, k=4), meta).save(tmp_path / "other")
    window._last_error = ""
    window.switcher.train_dialog()  # made for the demo CLIP
    replaced = tensors_of(window.model)  # a weight of the SAE, the encoder and the decoder
    window.switcher.load_sae(tmp_path / "other")
    qtbot.waitUntil(lambda: window.model.sae_folder == tmp_path / "other", timeout=60_000)
    assert len(replaced) == 3
    qtbot.waitUntil(lambda: all(r() is None for r in replaced), timeout=10_000)  # the models replaced are freed
    session = window.model.session
    assert session.backbone.model_id == f"local-dir:{tiny_clip.resolve()}" != old
    window.switcher.train_dialog()  # trains on the encoder now open
    assert window.switcher.train.model_spec == session.backbone.model_id
    assert session.backbone.layer == 6 and session.decoder is None  # the demo decoder paints another embedding
    qtbot.waitUntil(lambda: session.current is not None, timeout=30_000)  # the open picture, read again
    assert session.image_activations().shape == (4 * width,) and window._last_error == ""
    assert window.canvas.busy_text == NO_DECODER and window.result is None  # said where the picture would be
    assert "no edits" not in window.canvas.after_caption  # no round trip of the decoder is shown either
    assert window.generation.decoder_box.currentText() == "none loaded"

    from sae.assets import DEMO

    window.switcher.load_sae(DEMO / "sae")  # the shipped SAE: its CLIP, and the decoder that paints it
    qtbot.waitUntil(lambda: window.model.session.decoder is not None, timeout=60_000)
    assert window.decoder_name == "demo" and window.model.sae_folder == DEMO / "sae"
    assert window.generation.decoder_box.currentData() == "demo"
    qtbot.waitUntil(lambda: window.result is not None, timeout=60_000)  # the open picture, painted again
    assert window._last_error == "" and window.canvas.busy_text == ""


def test_a_replaced_weight_held_in_a_cycle_is_collected_and_one_freed_alone_costs_no_collection():
    import gc
    import weakref

    from editor.collector import release_replaced

    try:
        cycle, alone = {"weight": torch.zeros(3)}, {"weight": torch.zeros(3)}
        cycle["self"] = cycle
        gc.freeze()  # as after a load: what exists is exempt from automatic passes
        refs = [weakref.ref(cycle["weight"])], [weakref.ref(alone["weight"])]
        del cycle, alone
        assert refs[1][0]() is None and release_replaced(refs[1]) is False  # reference counting freed it
        held = refs[0][0]() is not None  # (asserted after: pytest keeps what an assert reads)
        collected = release_replaced(refs[0])
        freed = refs[0][0]() is None
        assert held and collected and freed
    finally:
        gc.unfreeze()


def test_a_published_sae_file_imports_once_and_loads_on_the_editors_encoder(window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    backbone = window.model.session.backbone
    d = backbone.width
    t = {"W_enc": torch.randn(d, 64), "b_enc": torch.zeros(64), "W_dec": torch.randn(64, d), "b_dec": torch.zeros(d)}
    header = {"schema": 5, "cfg": {"d_model": d, "d_sae": 64, "activation": {"cls": "Relu", "params": {}}}}
    with open(tmp_path / "sae.pt", "wb") as fd:  # saev's layout: it names neither encoder nor layer
        fd.write((json.dumps(header) + "\n").encode())
        torch.save(t, fd)
    window.switcher.import_sae(tmp_path / "sae.pt")
    out = tmp_path / "data" / "sae-studio" / "imported" / "sae"
    qtbot.waitUntil(lambda: window.model.sae_folder == out, timeout=30_000)
    sae = window.model.workspace.sae
    assert sae.d_sae == 64 and sae.metadata.layer == backbone.layer and sae.metadata.imported["layout"] == "saev"

    torch.save([torch.zeros(2)], tmp_path / "list.pt")  # not a state dict: one sentence, the SAE kept
    window._last_error = ""
    window.switcher.import_sae(tmp_path / "list.pt")
    qtbot.waitUntil(lambda: window._last_error != "", timeout=30_000)
    assert "not a state dict" in window._last_error and window.model.sae_folder == out


def test_an_sae_imports_from_the_hub_with_a_download_dialog(window, qtbot, tmp_path, monkeypatch):
    """Models > Import SAE from the hub: hf:OWNER/REPO/FOLDER through huggingface_hub's own download
    (answered from its cache, offline), a dialog while it runs, then the SAE loads on the editor's
    encoder; a repository not at hand is one sentence and the SAE is kept."""
    from huggingface_hub import constants
    from PySide6.QtWidgets import QProgressDialog

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "Import SAE from the &hub…" in [a.text() for a in window.menuBar().actions()[-1].menu().actions()]
    snapshot = tmp_path / "hub" / "models--lab--clip-saes" / "snapshots" / ("0" * 40)
    published = window.model.workspace.sae.folded_copy()
    published.metadata.backbone = ""  # as most hub SAEs: it names no encoder, so the editor's is used
    published.save(snapshot / "blocks.3.hook_resid_pre")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    window._last_error = ""
    window.switcher.import_sae("hf:lab/clip-saes/blocks.3.hook_resid_pre")
    assert [d for d in window.findChildren(QProgressDialog) if d.isVisible()]  # the download's dialog, at once
    out = tmp_path / "data" / "sae-studio" / "imported" / "blocks.3.hook_resid_pre"
    qtbot.waitUntil(lambda: window.model.sae_folder == out or window._last_error != "", timeout=30_000)
    assert window.model.sae_folder == out, window._last_error
    assert not [d for d in window.findChildren(QProgressDialog) if d.isVisible()]
    window._last_error = ""
    window.switcher.import_sae("hf:lab/elsewhere")
    qtbot.waitUntil(lambda: window._last_error != "", timeout=30_000)
    assert "Could not download lab/elsewhere" in window._last_error and window.model.sae_folder == out
    assert not [d for d in window.findChildren(QProgressDialog) if d.isVisible()]


def test_train_dialog_charts_cancels_resumes_and_switches_to_the_new_sae(window, qtbot, quick_models, tmp_path):
    _root, images = quick_models
    window.switcher.train_dialog()
    dlg = window.switcher.train
    dlg.images.setText(str(images))
    dlg.out.setText(str(tmp_path / "mine"))
    dlg.expansion.setValue(4)
    dlg.k.setValue(4)
    dlg.tokens.setValue(1)
    dlg.start()
    qtbot.waitUntil(lambda: dlg.chart.points() >= 3, timeout=120_000)
    dlg.cancel()
    assert dlg.wait(60_000)
    assert "Stopped during training" in dlg.last_message
    assert (tmp_path / "mine" / "trainer_state.json").is_file()  # a resumable checkpoint
    assert dlg.start_button.text() == "Resume"
    with qtbot.waitSignal(dlg.trained, timeout=300_000):
        dlg.start()
    qtbot.waitUntil(lambda: window.model.sae_folder == tmp_path / "mine", timeout=30_000)
    assert (tmp_path / "mine" / "labels.json").is_file() and window.model.index is not None
    assert not (tmp_path / "mine" / "trainer_state.json").exists()
    evidence = window.model.directions.evidence  # search weighs the new index's image evidence
    assert evidence is window.model.index.evidence and int(evidence.n) == len(window.model.index.sources)
    window.run_search("cat")
    qtbot.waitUntil(lambda: window.features.results.count() > 0, timeout=10_000)


def test_train_dialog_trains_an_sae_on_the_image_embedding(window, qtbot, quick_models, tmp_path):
    from sae.backbone import EMBEDDING

    _root, images = quick_models
    window.switcher.train_dialog()
    dlg = window.switcher.train
    dlg.layer.setValue(dlg.layer.minimum())
    assert dlg.layer.text() == "image embedding" and dlg.chosen_layer() == EMBEDDING
    dlg.images.setText(str(images))
    dlg.out.setText(str(tmp_path / "on-embedding"))
    dlg.expansion.setValue(2)
    dlg.k.setValue(4)
    dlg.tokens.setValue(1)
    with qtbot.waitSignal(dlg.trained, timeout=300_000):
        dlg.start()
    qtbot.waitUntil(lambda: window.model.sae_folder == tmp_path / "on-embedding", timeout=30_000)
    sae = window.model.session.sae
    assert sae.metadata.layer == EMBEDDING and sae.d_in == window.model.session.backbone.embed_dim
    # an embedding has one token: its sliders offer no choice of tokens
    window.add_slider(0)
    row = window.sliders.row_for(0)
    assert not row.tokens.isEnabled() and row.edit().tokens == "all"
    row.set_mask(None)
    assert not row.tokens.isEnabled()


def test_first_run_suggests_a_cat_slider_that_fires_on_the_image_if_one_can(qtbot, quick_models, tmp_path):
    from editor.main_window import FIRST_RUN_SLIDER

    root, images = quick_models
    w = _new_window(qtbot, root, tmp_path)
    w.open_image(sorted(images.glob("*.png"))[0])  # before the models are ready, as at start-up
    qtbot.waitUntil(lambda: w.model is not None and not w.loading_image and len(w.sliders.rows) == 1, timeout=60_000)
    hits = [h.latent for h in w.model.search(FIRST_RUN_SLIDER, top=5)]
    chosen = w.sliders.rows[0].latent
    named = [f.latent for f in w.model.session.fires(20) if f.label == FIRST_RUN_SLIDER]
    firing = [latent for latent in hits if w.model.current_activation(latent) > 0]
    assert chosen == (named or firing or hits)[0]
    assert w.features.search.text() == FIRST_RUN_SLIDER and w.settings.value("first_run_done")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="reads RSS from /proc")
@pytest.mark.slow
def test_soak_1000_slider_moves_and_50_image_switches(window, qtbot, quick_models):
    """Memory stays flat and the canvas never shows a result of an older state or image.

    Drags of ten moves (previews requested faster than they render) end in a release whose
    full render is waited for; every second drag ends by switching the image."""
    import gc

    _root, images = quick_models
    paths = sorted(images.glob("*.png"))[:5]
    window.generation.lock_seed.setChecked(True)
    _open(window, qtbot, paths[0])
    fires = window.model.session.fires(2)
    for f in fires:
        window.add_slider(f.latent)
    shown, shown_stale = [], []
    window.scheduler.finished.connect(lambda job, _im: shown.append(job))
    window.scheduler.finished.connect(
        lambda job, _im: shown_stale.append(job) if job != window.scheduler.latest else None
    )
    rng = np.random.default_rng(0)
    baseline = None
    switches = 0
    for move in range(1000):
        row = window.sliders.rows[move % len(window.sliders.rows)]
        row._press()
        row.slider.setValue(float(rng.uniform(-2, 2)))
        qtbot.wait(1)
        if move % 10 == 9:  # the end of a drag: release, and look at the full-quality result
            row._release()
            window.scheduler.wait(60_000)
        if move % 20 == 19:
            window.open_image(paths[switches % len(paths)])
            switches += 1
        if move == 99:
            window.scheduler.wait(60_000)
            gc.collect()
            baseline = _rss_mb()
    assert switches == 50
    qtbot.waitUntil(lambda: not window.loading_image, timeout=30_000)
    window.result = None
    window.request_render(preview=False)
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=60_000)
    gc.collect()
    growth = _rss_mb() - baseline
    assert growth < 100, f"RSS grew {growth:.0f} MB over 900 slider moves and 45 image switches"
    assert shown_stale == [] and len(shown) >= 90, (len(shown), shown_stale)  # it did render as it went
    # What is shown is exactly the render of the final state of the final image.
    expected = window.model.session.render(window.sliders.edits(), window.decode_settings(False))
    assert np.array_equal(np.asarray(window.result), np.asarray(expected))
    assert window.image_path == paths[(switches - 1) % len(paths)]


def test_induced_slider_from_examples_edits_undoes_and_travels_in_presets(window, qtbot, quick_models, tmp_path):
    from sae.demo import world

    _root, images = quick_models
    rng = np.random.default_rng(1)
    examples = []  # night scenes: a concept the quickly trained test CLIP tells apart for sure
    for i in range(8):
        p = tmp_path / f"night{i}.png"
        Image.fromarray(world.render(world.sample_scene(rng, background="night"), i)).save(p)
        examples.append(p)
    window.generation.lock_seed.setChecked(True)
    _open(window, qtbot, sorted(images.glob("*.png"))[0])
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    before = np.asarray(window.result)
    window._last_error = ""
    window.induction.induce(examples, "night")
    qtbot.waitUntil(lambda: not window.induction.busy, timeout=60_000)
    assert window._last_error == ""
    [row] = [r for r in window.sliders.rows if r.latent < 0]
    assert row.weights == window.model.induced[row.latent].weights and not row.mode.isEnabled()
    assert row.slider.value() == 1.0 and "induced" in row.title.text()
    window.result = None
    row._press()
    row.slider.setValue(3.0)
    row._release()
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    assert not np.array_equal(before, np.asarray(window.result))
    preset = window.current_preset()
    [edit] = [e for e in preset.edits if e.weights is not None]
    assert edit.value == 3.0 and edit.label == "night"
    window.undo.undo()  # the move
    window.undo.undo()  # the add
    assert not [r for r in window.sliders.rows if r.latent < 0]
    window.apply_preset(preset, "The preset")
    [again] = [r for r in window.sliders.rows if r.latent < 0]
    assert again.weights == row.weights and again.slider.value() == 3.0


def test_a_hub_decoder_download_shows_progress_and_offline_is_one_message(window, qtbot, tmp_path, monkeypatch):
    """The first use of a hub decoder opens a download dialog; with the hub unreachable the
    dialog closes, one message says what to do, and the decoder in use stays."""
    from huggingface_hub import constants

    import sae.decoders.registry as registry

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached yet
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # an unreachable hub
    monkeypatch.setattr(registry, "check_pair", lambda name, backbone: None)  # the quick CLIP is not ViT-bigG
    before = window.model.session.decoder
    window._last_error = ""
    window.switcher.choose_decoder("kandinsky-2.2")
    assert (
        window.switcher.download_dialog is not None
        and "Downloading the kandinsky-2.2 decoder" in window.switcher.download_dialog.labelText()
    )
    qtbot.waitUntil(lambda: window._last_error != "", timeout=60_000)
    assert "Could not download kandinsky-community/kandinsky-2-2-decoder" in window._last_error
    assert "network connection" in window._last_error
    qtbot.waitUntil(lambda: window.switcher.download_dialog is None, timeout=10_000)
    assert window.model.session.decoder is before


def _slider_to_drag(window, qtbot, quick_models):
    """A sample image open with the seed locked and the slider of its strongest feature added,
    every render finished: that slider's row."""
    _root, images = quick_models
    window.generation.lock_seed.setChecked(True)
    _open(window, qtbot, sorted(images.glob("*.png"))[2])
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    latent = window.model.session.fires(1)[0].latent
    window.add_slider(latent)
    window.scheduler.wait(30_000)
    return window.sliders.row_for(latent)


def test_a_drag_that_ends_where_it_began_still_ends_on_the_full_render(window, qtbot, quick_models):
    """Dragged away (a preview shows) and back before the release: nothing to undo, but the
    picture must not stay a low-step preview."""
    row = _slider_to_drag(window, qtbot, quick_models)
    undo_steps = window.undo.count()
    start, previews, shown = row.slider.value(), {}, []
    request = window.scheduler.request

    def recorded(edits, settings, preview=False):
        job = request(edits, settings, preview)
        previews[job] = preview
        return job

    window.scheduler.request = recorded
    window.scheduler.finished.connect(lambda job, _im: shown.append(job))
    row._press()
    row.slider.setValue(start + 1.0)
    qtbot.waitUntil(lambda: bool(shown) and window.scheduler.wait(1), timeout=30_000)  # a preview of the drag shows
    row.slider.setValue(start)
    row._release()
    qtbot.waitUntil(lambda: window.scheduler.wait(1), timeout=30_000)
    qtbot.wait(300)  # past the preview throttle's interval: no late preview replaces the render
    assert previews[shown[0]] and not previews[shown[-1]]
    expected = window.model.session.render(window.sliders.edits(), window.decode_settings(False))
    assert np.array_equal(np.asarray(window.result), np.asarray(expected))
    assert window.undo.count() == undo_steps


def test_a_fast_drag_shows_previews_as_it_goes_then_the_full_render(window, qtbot, quick_models):
    """Moves every 5 ms (faster than a preview decodes): previews are throttled to the decode's
    pace and finish, instead of each move cancelling the last; the release renders at full steps."""
    import time

    row = _slider_to_drag(window, qtbot, quick_models)
    shown = []
    window.scheduler.finished.connect(lambda job, _im: shown.append(job))
    row._press()
    # at least 1.5 s; on a loaded machine until three previews came (a drag whose every move
    # cancelled the last preview would show none however long it went on)
    start, i = time.monotonic(), 0
    while time.monotonic() < start + 1.5 or (len(shown) < 3 and time.monotonic() < start + 15):
        row.slider.setValue((i % 40) / 20)
        qtbot.wait(5)
        i += 1
    during = len(shown)
    row._release()
    qtbot.waitUntil(lambda: window.scheduler.wait(1) and len(shown) > during, timeout=30_000)
    assert i > 100 and during >= 3, (i, during)  # the picture kept up with the drag
    expected = window.model.session.render(window.sliders.edits(), window.decode_settings(False))
    assert np.array_equal(np.asarray(window.result), np.asarray(expected))  # and ends on the full render


def test_a_drag_supersedes_a_long_render_previews_paint_smaller_when_slow_and_stop_keeps_the_picture(
    window, qtbot, quick_models, monkeypatch
):
    """A long full render (a CPU at real size takes minutes) does not hold a drag's previews back:
    the drag supersedes it. Where steps are slow the previews paint at half the side and still come
    back at the picture's size. Stop ends a render and keeps the picture shown."""
    import editor.main_window as main_window

    _root, images = quick_models
    g = window.generation
    _open(window, qtbot, sorted(images.glob("*.png"))[1])
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    latent = window.model.session.fires(1)[0].latent
    window.add_slider(latent)
    window.scheduler.wait(30_000)
    picture_size = window.result.size
    monkeypatch.setattr(main_window, "SLOW_STEP_S", 0.0)  # as if each step took seconds
    g.keep_rest.setChecked(False)
    g.strength.setValue(0.99)
    g.steps.setValue(200)  # a long whole-picture render
    shown = []
    window.scheduler.finished.connect(lambda job, im: shown.append((job, im)))
    window.request_render(preview=False)
    long_job = window.scheduler.latest
    qtbot.waitUntil(lambda: window.stop_button.isVisibleTo(window), timeout=30_000)  # its steps run

    row = window.sliders.row_for(latent)
    row._press()
    row.slider.setValue(1.0)  # the drag's first move asks for a preview at once
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=30_000)
    assert shown[0][0] != long_job and shown[0][1].size == picture_size  # a preview, not the long render
    assert window.decode_settings(preview=True).scale == main_window.SLOW_PREVIEW_SCALE
    assert window.decode_settings(preview=False).scale == 1.0

    before = window.result
    row._release()  # the full render at 200 steps starts
    qtbot.waitUntil(lambda: window.stop_button.isVisibleTo(window), timeout=30_000)
    window.stop_button.click()
    assert window.scheduler.wait(30_000) and not window.stop_button.isVisibleTo(window)
    qtbot.wait(50)
    assert len(shown) == 1 and window.result is before and window.canvas.busy_text == ""  # the picture stays


def test_a_renders_progress_bar_and_stop_button_coming_and_going_leave_the_windows_layout(window, qtbot):
    """Every render shows a progress bar and a Stop button and hides them at its end. Each time,
    Qt laid out and repainted the whole window on the GUI thread."""
    from PySide6.QtCore import QEvent

    window.show()
    qtbot.waitExposed(window)
    qtbot.wait(100)
    with _events(window, QEvent.Type.LayoutRequest) as requests:
        for step in (1, 4, 1, 4):  # a render's first step shows them, its last hides them
            window._progress(window.scheduler.latest, step, 4)
            qtbot.wait(30)
            assert window.stop_button.isVisibleTo(window) == (step < 4)
    assert not requests


def test_dragging_the_selected_slider_does_not_repaint_the_canvas(window, qtbot, quick_models, monkeypatch):
    """Each move of the selected slider repainted the whole canvas, in case its mask had changed:
    work on the GUI thread at every step of a drag, beside the decoder's convolutions."""
    from PySide6.QtCore import QEvent

    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[3])
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    window.show()
    qtbot.waitExposed(window)
    latent = window.model.session.fires(1)[0].latent
    window.add_slider(latent)
    qtbot.waitUntil(lambda: window.doc.slider(latent).scale.calibrated, timeout=30_000)
    # what repaints the canvas by right is done: renders (the sweep strip's too) and the heatmap
    qtbot.waitUntil(lambda: not window.scheduler.busy and not window.jobs.busy("heatmap"), timeout=30_000)
    monkeypatch.setattr(window, "request_render", lambda preview=False: None)  # the drag's own previews
    row = window.sliders.row_for(latent)
    with _events(window.canvas, QEvent.Type.Paint) as paints:
        for value in (0.3, 0.6, 0.9):
            row.slider.setValue(value)
            qtbot.wait(30)
    assert row.slider.value() == pytest.approx(0.9) and not paints


def test_the_sweep_strip_shows_the_selected_slider_across_its_range_and_makes_way_for_renders(
    window, qtbot, quick_models
):
    """Selecting a slider paints it at five positions in the background; a slider render asked
    for meanwhile runs before the sweep's remaining pictures; dragging that slider keeps them;
    clicking one moves the slider there."""
    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[3])
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    latent = window.model.session.fires(1)[0].latent
    window.add_slider(latent)
    qtbot.waitUntil(lambda: window.doc.slider(latent).scale.calibrated, timeout=30_000)
    row = window.sliders.row_for(latent)
    events = []
    window.scheduler.sweep_ready.connect(lambda job, i, _im: events.append(("sweep", i)))
    window.scheduler.finished.connect(lambda job, _im: events.append(("render", job)))
    window.sliders.select(row)
    assert len(window.sweep.buttons) == 5 and window.sweep.latent == latent
    window.scheduler.request(window.doc.edits(), window.decode_settings())  # asked for while the sweep paints
    qtbot.waitUntil(lambda: sum(e[0] == "sweep" for e in events) == 5, timeout=60_000)
    assert [e[1] for e in events if e[0] == "sweep"] == [0, 1, 2, 3, 4]  # the sweep resumed where it was
    assert events.index(next(e for e in events if e[0] == "render")) < len(events) - 1  # and made way
    assert all(not b.icon().isNull() for b in window.sweep.buttons)
    job = window.sweeps.job
    row.slider.setValue(0.5)  # a drag of the selected slider changes none of its previews: they stay
    row.slider.setValue(0.0)
    assert window.sweeps.job == job and all(not b.icon().isNull() for b in window.sweep.buttons)

    window.sweep.buttons[3].click()  # +1 unit
    assert row.state.value == pytest.approx(row.state.scale.amount(1.0))
    assert row.slider.value() == pytest.approx(1.0, abs=0.01)
    window.undo.undo()
    assert row.state.value == 0.0


def test_a_new_sliders_calibration_waits_while_a_render_the_user_asked_for_runs(window, qtbot, quick_models):
    """On a machine a render fills, measuring a new slider's units must not slow that render: the
    measurement pauses between its encoder passes until the render has finished."""
    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[5])
    qtbot.waitUntil(lambda: window.result is not None and window.scheduler.wait(1), timeout=30_000)
    measured = window.model.workspace.calibrations.entries
    latent = next(f.latent for f in window.model.session.fires(20) if f.latent not in measured)
    at_render_end = []
    window.scheduler.finished.connect(lambda *_: at_render_end.append(window.doc.slider(latent).scale.calibrated))
    other = next(f.latent for f in window.model.session.fires(20) if f.latent != latent)
    window.scheduler.request([Edit(other, "add", 5.0)], window.doc.settings.but(steps=40))
    window.add_slider(latent)
    qtbot.waitUntil(lambda: window.doc.slider(latent).scale.calibrated, timeout=60_000)
    assert at_render_end == [False]  # the render ended first, though it started with the measurement


def test_new_sliders_are_calibrated_one_at_a_time(window, qtbot, quick_models):
    """A preset's many sliders are measured in turn, not all at once sharing the cores and memory."""
    import threading

    from editor.model import NOT_MEASURED

    _root, images = quick_models
    _open(window, qtbot, sorted(images.glob("*.png"))[4])
    measured = window.model.workspace.calibrations.entries
    latents = [f.latent for f in window.model.session.fires(20) if f.latent not in measured][:3]
    running, most, lock = [0], [0], threading.Lock()
    measure = window.model.calibrate

    def counted(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return measure(*args)
        finally:
            with lock:
                running[0] -= 1

    window.model.calibrate = counted
    for latent in latents:
        window.add_slider(latent)
    qtbot.waitUntil(lambda: all(window.doc.slider(x).scale.why != NOT_MEASURED for x in latents), timeout=60_000)
    assert len(latents) == 3 and most[0] == 1


def test_sae_studio_open_starts_on_an_sae_folder_and_loads_the_decoder_that_paints_its_encoder(qtbot, tmp_path, capsys):
    from editor.main_window import MainWindow
    from editor.model import EditorModel
    from sae.assets import DEMO, SAMPLES
    from sae.cli import main

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(lambda: EditorModel.open(DEMO / "sae"), settings=settings)  # what sae-studio open --sae runs
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.model is not None, timeout=60_000)
    assert w.model.session.decoder is None and w.switcher.loading == "demo"  # chosen by its encoder
    assert w.canvas.busy_text == "loading the demo decoder…"
    w.open_image(SAMPLES / "cat-on-grass.png")
    qtbot.waitUntil(lambda: w.model.session.decoder is not None and w.result is not None, timeout=60_000)
    assert w.decoder_name == "demo" and w.canvas.busy_text == ""

    assert main(["open", "--sae", str(tmp_path / "nothing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own niceness is Linux's")
def test_background_jobs_run_below_the_gui_threads_priority(qtbot):
    """Torch's threads fill every core while a real-size model runs; lowered, they yield to the
    GUI thread whenever it wakes instead of keeping it waiting for its turn."""
    import threading

    from editor.jobs import JobRunner
    from editor.priority import BACKGROUND_NICE

    gui = threading.main_thread().native_id
    before = os.getpriority(os.PRIO_PROCESS, gui)
    seen = []
    JobRunner().run("probe", lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), done=seen.append)
    qtbot.waitUntil(lambda: bool(seen), timeout=10_000)
    assert seen[0] >= BACKGROUND_NICE and os.getpriority(os.PRIO_PROCESS, gui) == before


def _shipped_decoder_built() -> bool:
    from sae.demo.build import DEMO

    return (DEMO / "decoder" / "model_index.json").is_file()


NEEDS_DECODER = pytest.mark.skipif(not _shipped_decoder_built(), reason="assets/demo/decoder has not been built yet")


@NEEDS_DECODER
def test_the_whole_flow_on_the_shipped_models(qtbot, tmp_path):
    """Drop a sample image, search "cat", add its slider, drag it up: the judge sees a cat where it
    saw none; undo restores the earlier picture exactly; the exported preset applied to another
    image gives what `sae-studio edit` gives, bit for bit."""
    _whole_flow(qtbot, tmp_path, "dog-in-a-hat.png", judge_sees_cat=True)


def _whole_flow(qtbot, tmp_path, sample: str, judge_sees_cat: bool) -> None:
    from editor.main_window import MainWindow
    from sae.assets import DEMO, SAMPLES
    from sae.cli import main
    from sae.demo import world
    from sae.demo.judge import Judge

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("first_run_done", True)  # no suggested slider: the test finds its own
    w = MainWindow(settings=settings)  # the default loader: the shipped demo models
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.model is not None, timeout=120_000)
    w.generation.lock_seed.setChecked(True)
    judge = Judge.load(DEMO / "judge")
    cat = world.KINDS.index("cat")

    def settled():
        return not w.loading_image and w.result is not None and w.scheduler.wait(1)

    _drop(w, SAMPLES / sample)
    qtbot.waitUntil(lambda: settled() and w.features.fires.count() > 0, timeout=60_000)
    before = np.asarray(w.result)
    assert judge.predict(before[None]).present[0, cat] < 0.5

    w.features.search.setText("cat")
    qtbot.waitUntil(lambda: w.features.results.count() > 0, timeout=10_000)
    w.features._add(w.features.results.item(0))
    [row] = w.sliders.rows
    w.result = None
    row._press()
    row.slider.setValue(4.0)
    moved = row.state.value  # the amount: the slider's units may change when its calibration arrives
    row._release()
    qtbot.waitUntil(settled, timeout=60_000)
    edited = np.asarray(w.result)
    assert not np.array_equal(edited, before)
    if judge_sees_cat:
        assert judge.predict(edited[None]).present[0, cat] > 0.5

    w.undo.undo()  # the drag
    qtbot.waitUntil(lambda: settled() and row.state.value == 0.0, timeout=60_000)
    w.result = None
    w.request_render()
    qtbot.waitUntil(settled, timeout=60_000)
    assert np.array_equal(np.asarray(w.result), before)
    w.undo.redo()
    qtbot.waitUntil(lambda: settled() and row.state.value == moved, timeout=60_000)

    preset_path = tmp_path / "cat.json"
    w.current_preset().save(preset_path)
    other = SAMPLES / "house-at-night.png"
    _drop(w, other)
    qtbot.waitUntil(settled, timeout=60_000)
    w.result = None
    _drop(w, preset_path)
    qtbot.waitUntil(settled, timeout=60_000)
    assert main(["edit", str(other), "--preset", str(preset_path), "-o", str(tmp_path / "out")]) == 0
    cli = np.asarray(Image.open(tmp_path / "out" / other.name).convert("RGB"))
    assert np.array_equal(np.asarray(w.result), cli)


def test_recent_files_survive_a_restart_whole(qtbot, quick_models, tmp_path):
    """An INI settings file reads a one-entry list back as a bare string; Recent must not split it
    into letters."""
    root, images = quick_models
    first, second = sorted(images.glob("*.png"))[:2]
    w = _new_window(qtbot, root, tmp_path)
    qtbot.waitUntil(lambda: w.model is not None, timeout=30_000)
    w.recent.remember(first)
    w.settings.flush()
    again = _new_window(qtbot, root, tmp_path)  # the same settings file, read afresh
    qtbot.waitUntil(lambda: again.model is not None, timeout=30_000)
    assert again.recent.paths() == [str(first)]
    again.recent.remember(second)
    assert again.recent.paths() == [str(second), str(first)]
    assert [a.text() for a in again.recent_menu.actions()] == [second.name, first.name]
