"""The contact sheet of `deepvis render --sheet`: every image intact, in order, labelled."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.analyses.featurevis.contact_sheet import (
    BACKGROUND,
    GAP,
    LABEL_HEIGHT,
    contact_sheet,
)


def test_tiles_in_row_major_order_with_labels_under_them():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    sheet = contact_sheet(images, [f"u{i}" for i in range(5)], columns=3, title="a layer")
    top = LABEL_HEIGHT + GAP  # the title line
    assert sheet.shape == (top + GAP + 2 * (20 + LABEL_HEIGHT + GAP), GAP + 3 * (30 + GAP), 3)
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = top + GAP + r * (20 + LABEL_HEIGHT + GAP), GAP + c * (30 + GAP)
        assert np.array_equal(sheet[y : y + 20, x : x + 30], images[i])
        label = sheet[y + 20 : y + 20 + LABEL_HEIGHT, x : x + 30]
        assert (label < BACKGROUND).any()  # some text was drawn
    # the sixth cell is empty, and the title line has text
    assert (sheet[top + GAP + 20 + LABEL_HEIGHT + GAP :, GAP + 2 * 34 :] == BACKGROUND).all()
    assert (sheet[:top] < BACKGROUND).any()


def test_default_grid_is_near_square_and_bad_input_is_refused():
    images = np.zeros((10, 8, 8, 3), np.uint8)
    sheet = contact_sheet(images, [str(i) for i in range(10)])
    cols = (sheet.shape[1] - GAP) // (8 + GAP)
    assert cols == 4
    with pytest.raises(ValueError, match="label"):
        contact_sheet(images, ["only one"])
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet(images.astype(np.float32), [str(i) for i in range(10)])
