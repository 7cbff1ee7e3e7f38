"""The real window on the real session and bundled model: a user's first minute."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QImage

from app.core.messages import NoticeLevel
from app.core.settings import GuiSettings, Settings
from app.session.live import LiveSession
from tests.photos import CAT_CLASSES, chelsea, coffee, write_jpeg

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_real_window_follows_the_user(qtbot, tmp_path):
    cat = write_jpeg(tmp_path / "cat.jpg", chelsea())
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jpeg(folder / "a_cat.jpg", chelsea())
    write_jpeg(folder / "b_coffee.jpg", coffee())
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    session = LiveSession(Settings(), torch.device("cpu"))
    ui = WindowDriver.open(qtbot, session, Settings(gui=GuiSettings(width=1400, height=900)))
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(cat))
        ui.wait_for_results(1, timeout=60_000)
        r = ui.last_result()
        assert r.predictions[0].index in CAT_CLASSES
        assert len(ui.layer_rows()) > 100

        # change layer from the list: the next results come from that layer
        row = next(i for i, text in enumerate(ui.layer_rows()) if text.startswith("_blocks.2 "))
        ui.click_layer_row(row)
        ui.wait_until(lambda: ui.last_result().layer == "_blocks.2", timeout=30_000)
        g = ui.last_result().geometry
        assert g.channels == 24

        # click a tile: the unit pane follows, and the engine sends that unit's map
        ui.click_unit(5)
        ui.wait_until(lambda: ui.last_result().unit == 5, timeout=30_000)
        assert ui.selected_unit() == 5
        unit_map = ui.last_result().unit_map
        assert unit_map.shape == (g.tile_h, g.tile_w)
        assert ui.last_result().unit_max[5] == pytest.approx(float(unit_map.max()))

        # keys: right arrow moves on, f freezes
        ui.press(Qt.Key.Key_Right)
        ui.wait_until(lambda: ui.last_result().unit == 6, timeout=30_000)
        ui.press(Qt.Key.Key_F)
        ui.wait_until(lambda: ui.last_result().frozen, timeout=30_000)
        ui.press(Qt.Key.Key_F)

        # a folder with a broken file: n steps through, the broken file is reported
        session.open_source(str(folder))
        ui.wait_until(lambda: ui.last_result().frame.source.startswith("a_cat"),
                      timeout=30_000)
        ui.press(Qt.Key.Key_N)
        ui.wait_until(lambda: ui.last_result().frame.source.startswith("b_coffee"),
                      timeout=30_000)
        assert ui.last_result().predictions[0].label == "espresso"
        ui.press(Qt.Key.Key_N)  # skips the broken file, wraps
        ui.wait_until(lambda: any("c_broken.jpg" in n.text for n in ui.notices()),
                      timeout=30_000)

        # a bad model: an error in the status bar, the old model keeps running
        session.load_model("resnet18:/no/such/file.pth")
        ui.wait_until(lambda: any(n.level == NoticeLevel.ERROR and "no/such" in n.text
                                  for n in ui.notices()), timeout=30_000)
        assert ui.last_result().model == "efficientnet_lite0"
    finally:
        ui.close()
    assert not session.worker.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith(("capture", "deepvis"))]


def test_screenshot_flag_runs_the_real_window_and_exits(tmp_path):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--source", str(ROOT / "app" / "assets" / "sample.mp4"),
         "--layer", "_blocks.4", "--unit", "3", "--screenshot", str(out), "--frames", "5",
         "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = QImage(str(out))
    assert not image.isNull() and image.width() >= 800 and image.height() >= 500
    # not a blank grab: the window drew photos and tiles in many colours
    ptr = image.convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(ptr.constBits().asstring(ptr.sizeInBytes()), np.uint8)
    assert len(np.unique(arr.reshape(-1, 3)[:: 97], axis=0)) > 200


@pytest.mark.parametrize("kind", ["image", "folder"])
def test_screenshot_of_a_still_source_ends_with_fewer_results_than_frames(tmp_path, kind):
    """A still image gives one result (two with --layer): --frames 5 must not wait for more."""
    if kind == "image":
        source = write_jpeg(tmp_path / "cat.jpg", chelsea())
    else:
        source = tmp_path / "photos"
        source.mkdir()
        write_jpeg(source / "a_cat.jpg", chelsea())
        write_jpeg(source / "b_coffee.jpg", coffee())
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # the window's own fallback grabs after 120 s: a run that long is the bug
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--source", str(source), "--layer", "_blocks.4",
         "--screenshot", str(out), "--frames", "5", "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not QImage(str(out)).isNull()
