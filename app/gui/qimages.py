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
    # QImage only borrows the buffer: copy() detaches it before `data` goes away
    return QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """(h, w, 3) uint8 copy of a QImage (tests and screenshots read pixels with it)."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = rgb.height(), rgb.width(), rgb.bytesPerLine()
    ptr = rgb.constBits()
    assert ptr is not None
    ptr.setsize(h * stride)
    return np.frombuffer(ptr, np.uint8).reshape(h, stride)[:, : 3 * w].reshape(h, w, 3).copy()
