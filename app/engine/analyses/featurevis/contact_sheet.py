"""One PNG showing many images in a labelled grid: a layer's preferred images at a glance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

GAP = 4  # pixels between tiles and around the sheet
BACKGROUND = 255
TEXT_SCALE = 0.45
LABEL_HEIGHT = 18


def contact_sheet(images: np.ndarray, labels: Sequence[str], columns: int | None = None,
                  title: str = "") -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → one (rows·(H+label)+gaps, …, 3) uint8 RGB sheet.

    Each tile gets its label in a strip underneath; `columns` defaults to a near-square grid;
    `title` (optional) is a line above the grid.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError("images must be (N, H, W, 3) uint8")
    n, h, w, _ = images.shape
    if n == 0 or len(labels) != n:
        raise ValueError("need one label per image and at least one image")
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    top = LABEL_HEIGHT + GAP if title else 0
    cell_h, cell_w = h + LABEL_HEIGHT, w
    sheet = np.full((top + GAP + rows * (cell_h + GAP), GAP + cols * (cell_w + GAP), 3),
                    BACKGROUND, np.uint8)
    if title:
        _text(sheet, title, GAP, GAP + LABEL_HEIGHT - 5)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = top + GAP + r * (cell_h + GAP), GAP + c * (cell_w + GAP)
        sheet[y : y + h, x : x + w] = images[i]
        _text(sheet, labels[i], x + 2, y + h + LABEL_HEIGHT - 5, max_width=w - 4)
    return sheet


def _text(sheet: np.ndarray, text: str, x: int, baseline: int, max_width: int = 0) -> None:
    """Dark text at (x, baseline), shortened with "…" style dots if wider than `max_width`."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    while max_width and len(text) > 1 and cv2.getTextSize(
            text, font, TEXT_SCALE, 1)[0][0] > max_width:
        text = text[:-2] + "."
    cv2.putText(sheet, text, (x, baseline), font, TEXT_SCALE, (40, 40, 40), 1, cv2.LINE_AA)
