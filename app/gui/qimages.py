"""numpy ↔ QImage for the few RGB images that are shown as widgets, not as pyqtgraph items."""

from __future__ import annotations

import numpy as np
from PyQt6.QtGui import QImage


def rgb_to_qimage(image: np.ndarray) -> QImage:
    """A QImage owning a copy of an (h, w, 3) uint8 RGB array (or (h, w) gray)."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    data = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    h, w = data.shape[:2]
    buffer = data.tobytes()  # what PyQt's QImage takes; small crops, so the copy is cheap
    # QImage only borrows the buffer: copy() detaches it while `buffer` is still alive
    return QImage(buffer, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """(h, w, 3) uint8 copy of a QImage (tests and screenshots read pixels with it)."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = rgb.height(), rgb.width(), rgb.bytesPerLine()
    ptr = rgb.constBits()
    if ptr is None:  # a null image has no bits, and no pixels to copy
        return np.zeros((h, w, 3), np.uint8)
    rows = np.frombuffer(ptr.asstring(h * stride), np.uint8).reshape(h, stride)
    return rows[:, : 3 * w].reshape(h, w, 3).copy()
