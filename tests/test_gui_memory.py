"""Memory the window must not keep: a long live session has to stay flat."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")


def test_showing_images_keeps_no_memory_per_frame(qtbot) -> None:
    """pyqtgraph's QImage path leaked ~100 bytes an image under PyQt6 (a long session grew
    for ever); app.gui replaces that one function."""
    import gc
    import tracemalloc

    import pyqtgraph as pg

    import app.gui  # noqa: F401  (installs the fix)

    view = pg.GraphicsLayoutWidget()
    qtbot.addWidget(view)
    item = pg.ImageItem()
    view.addViewBox().addItem(item)
    view.show()
    lut = np.stack([np.arange(256)] * 3, 1).astype(np.uint8)
    frames = [np.full((48, 64), v, np.uint8) for v in range(8)]

    def show(n: int) -> None:
        for i in range(n):
            item.setImage(frames[i % 8], autoLevels=False, levels=(0, 255), lut=lut)
            item.render()  # makes the QImage, as a repaint would

    # the first thousands fill bounded caches (numpy's small-buffer cache keeps what an earlier
    # test left it); only what grows after that is a leak, and a leak grows with every image
    show(2000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    show(2000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # only what pyqtgraph and our fix allocate: the rest of a full suite's process (torch's,
    # a finished test's late garbage) is no business of the image path
    where = [tracemalloc.Filter(True, "*pyqtgraph*"), tracemalloc.Filter(True, "*app/gui*")]
    grown = sum(s.size_diff for s in after.filter_traces(where).compare_to(
        before.filter_traces(where), "filename"))
    assert grown / 2000 < 20, f"{grown / 2000:.0f} bytes kept per image"
