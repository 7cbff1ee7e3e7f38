"""Memory the window must not keep: a long live session has to stay flat."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: in a process that already ran hundreds of tests, other
# objects' bookkeeping lands on the same lines (35 B/image in a full suite, 2 alone), and a
# measurement of bytes per image has to see only the image path.
MEASURE = r"""
import gc, sys, tracemalloc
import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QApplication
app = QApplication([])
if sys.argv[1] == "fixed":
    import app.gui  # noqa: F401  (installs the fix)
view = pg.GraphicsLayoutWidget()
item = pg.ImageItem()
view.addViewBox().addItem(item)
view.show()
lut = np.stack([np.arange(256)] * 3, 1).astype(np.uint8)
frames = [np.full((48, 64), v, np.uint8) for v in range(8)]

def show(n):
    for i in range(n):
        item.setImage(frames[i % 8], autoLevels=False, levels=(0, 255), lut=lut)
        item.render()  # makes the QImage, as a repaint would

show(200)
gc.collect()
tracemalloc.start()
before = tracemalloc.take_snapshot()
show(2000)
gc.collect()
after = tracemalloc.take_snapshot()
print(sum(s.size_diff for s in after.compare_to(before, "filename")) / 2000)
"""


def _bytes_per_image(variant: str) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", MEASURE, variant], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def test_showing_images_keeps_no_memory_per_frame() -> None:
    """pyqtgraph's QImage path leaked ~100 bytes an image under PyQt6 (a long session grew
    for ever); app.gui replaces that one function. The unfixed path is measured too, so the
    test shows it can tell a leak."""
    fixed, unfixed = _bytes_per_image("fixed"), _bytes_per_image("unfixed")
    print(f"bytes kept per image: {fixed:.1f} with the fix, {unfixed:.1f} without")
    assert fixed < 20, f"{fixed:.0f} bytes kept per image"
    assert unfixed > 50  # the measurement sees the leak it guards against
