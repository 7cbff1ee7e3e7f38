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
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QImage

from app.core.messages import NoticeLevel
from app.core.settings import GuiSettings, Settings
from app.gui.main_window import MainWindow
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
    window = MainWindow(session, Settings(gui=GuiSettings(width=1400, height=900)))
    qtbot.addWidget(window)
    window.show()
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(cat))
        qtbot.waitUntil(lambda: window.last_result is not None, timeout=60_000)
        r = window.last_result
        assert r.predictions[0].index in CAT_CLASSES
        assert window.layer_list.count() > 100

        # change layer from the list: the next results come from that layer
        row = next(i for i in range(window.layer_list.count())
                   if window.layer_list.item(i).text().startswith("_blocks.2 "))
        window.layer_list.setCurrentRow(row)
        qtbot.waitUntil(lambda: window.last_result.layer == "_blocks.2", timeout=30_000)
        g = window.last_result.geometry
        assert g.channels == 24

        # click a tile: the unit pane follows, and the engine sends that unit's map
        viewport = window.grid.pane.graphics.viewport()
        pos = window.grid.pane.graphics.mapFromScene(window.grid.scene_pos_of_unit(5))
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=pos)
        qtbot.waitUntil(lambda: window.last_result.unit == 5, timeout=30_000)
        assert window.unit == 5
        unit_map = window.last_result.unit_map
        assert unit_map.shape == (g.tile_h, g.tile_w)
        assert window.last_result.unit_max[5] == pytest.approx(float(unit_map.max()))

        # keys: right arrow moves on, f freezes
        window.layer_list.setFocus()
        qtbot.keyClick(window.layer_list, Qt.Key.Key_Right)
        qtbot.waitUntil(lambda: window.last_result.unit == 6, timeout=30_000)
        qtbot.keyClick(window.layer_list, Qt.Key.Key_F)
        qtbot.waitUntil(lambda: window.last_result.frozen, timeout=30_000)
        qtbot.keyClick(window.layer_list, Qt.Key.Key_F)

        # a folder with a broken file: n steps through, the broken file is reported
        session.open_source(str(folder))
        qtbot.waitUntil(lambda: window.last_result.frame.source.startswith("a_cat"),
                        timeout=30_000)
        qtbot.keyClick(window.layer_list, Qt.Key.Key_N)
        qtbot.waitUntil(lambda: window.last_result.frame.source.startswith("b_coffee"),
                        timeout=30_000)
        assert window.last_result.predictions[0].label == "espresso"
        qtbot.keyClick(window.layer_list, Qt.Key.Key_N)  # skips the broken file, wraps
        qtbot.waitUntil(lambda: any("c_broken.jpg" in n.text for _, n in window.notices),
                        timeout=30_000)

        # a bad model: an error in the status bar, the old model keeps running
        session.load_model("resnet18:/no/such/file.pth")
        qtbot.waitUntil(lambda: any(n.level == NoticeLevel.ERROR and "no/such" in n.text
                                    for _, n in window.notices), timeout=30_000)
        assert window.last_result.model == "efficientnet_lite0"
    finally:
        window.close()
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
