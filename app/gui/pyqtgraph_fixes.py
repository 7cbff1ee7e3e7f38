"""A leak in how pyqtgraph hands images to Qt, worked around in one place.

pyqtgraph's `functions.ndarray_to_qimage` builds each QImage from `int(sip.voidptr(arr))`.
PyQt6 keeps the Python int it is given alive for good (about 100 bytes per QImage), and
every `ImageItem.setImage` makes one: a live session grew ~300 bytes a frame, for ever.
Passing the array's buffer builds the same image on the same memory and keeps nothing.
`functions_qimage` looks the function up on the module at each call, so replacing
the module attribute is enough. (pyqtgraph 0.14.0, PyQt6 6.11.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtGui import QImage

_installed = False


def ndarray_to_qimage(arr: np.ndarray, fmt: Any) -> QImage:
    """pyqtgraph's function, without the int that PyQt6 never frees."""
    h, w = arr.shape[:2]
    # arr.data is the array's own buffer (no copy); PyQt6 takes any buffer here
    qimg = QImage(arr.data, w, h, arr.strides[0], fmt)  # type: ignore[call-overload]  # stub: bytes
    qimg.data = arr  # the array must outlive the image (pyqtgraph reads it there too)
    return qimg


def install() -> None:
    """Put the fixed function in place (once; later calls do nothing)."""
    global _installed
    if not _installed:
        pg.functions.ndarray_to_qimage = ndarray_to_qimage
        _installed = True
