"""The whole image a top patch came from, its box outlined, in a non-modal dialog.

The source is decoded on a pool thread: a large photo takes a visible moment to decode,
which the GUI thread must not spend. The crop is shown until it arrives, and a source that
arrives after a newer click is dropped.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import QObject, QRectF, QRunnable, QSize, Qt, QThreadPool, pyqtSignal
from PyQt6.QtGui import (
    QColor,
    QImage,
    QImageIOHandler,
    QImageReader,
    QPainter,
    QPen,
    QPixmap,
)
from PyQt6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from app.core.messages import Patch
from app.gui import theme
from app.gui.image_files import ImageCanvas
from app.gui.qimages import rgb_to_qimage

MAX_SOURCE_SIDE = 4096  # larger sources are decoded scaled down, the box scaled with them


def load_source_image(path: str, box: tuple[int, int, int, int]) -> tuple[QImage, str]:
    """Decode `path` and outline `box` on it; → (image, "W×H") or (null image, why not).

    Safe off the GUI thread (QImage and QPainter on a QImage are; QPixmap is not). EXIF
    orientation is applied, as OpenCV applied it when the scan computed `box`; a huge image
    is decoded at most MAX_SOURCE_SIDE on its long side, which also bounds memory.
    """
    if not Path(path).is_file():
        return QImage(), "not on disk"
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    raw = reader.size()  # from the header: nothing decoded yet
    w, h = raw.width(), raw.height()
    if reader.transformation() & QImageIOHandler.Transformation.TransformationRotate90:
        w, h = h, w
    scale = min(1.0, MAX_SOURCE_SIDE / max(w, h, 1)) if raw.isValid() else 1.0
    if scale < 1.0:
        reader.setScaledSize(QSize(max(1, round(raw.width() * scale)),
                                   max(1, round(raw.height() * scale))))
    image = reader.read()
    if image.isNull():
        return QImage(), reader.errorString() or "unreadable"
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    y0, x0, y1, x1 = (v * scale for v in box)
    painter = QPainter(image)
    pen = QPen(QColor(theme.ACCENT))
    pen.setWidthF(max(2.0, min(image.width(), image.height()) / 150))
    painter.setPen(pen)
    painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
    painter.end()
    where = f"{w}×{h}" if scale == 1.0 else f"{w}×{h}, shown at {image.width()}×{image.height()}"
    return image, where


class _Loaded(QObject):
    """Carries a decoded source back to the GUI thread (a queued signal: it lives there)."""

    done = pyqtSignal(int, QImage, str)


class _LoadSource(QRunnable):
    def __init__(self, request: int, patch: Patch, loaded: _Loaded) -> None:
        super().__init__()
        self.request, self.patch, self.loaded = request, patch, loaded

    def run(self) -> None:
        image, where = load_source_image(self.patch.source, self.patch.box)
        self.loaded.done.emit(self.request, image, where)


class PatchDialog(QDialog):
    """The whole image a patch came from, its box outlined; non-modal, reused between clicks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Patch source")
        self.setModal(False)
        self.resize(760, 600)
        layout = QVBoxLayout(self)
        self.canvas = ImageCanvas()
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.caption)
        self.image: QImage | None = None  # as shown, box included (tests read its pixels)
        self.loading = False
        self._request = 0
        self._patch: Patch | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._loaded = _Loaded(self)
        self._loaded.done.connect(self.deliver_source)

    def show_patch(self, patch: Patch) -> int:
        """Show the crop now and the whole source image, box drawn, once decoded.

        Returns the request's number: `deliver_source` drops an answer to an older one.
        """
        self._request += 1
        self._patch = patch
        self.loading = True
        self._show(rgb_to_qimage(patch.image), "loading the whole image…")
        self.setWindowTitle(f"Patch source — {Path(patch.source).name or patch.source}")
        self.show()
        self.raise_()
        self._pool.clear()  # decodes queued for older clicks would only be dropped
        self._pool.start(_LoadSource(self._request, patch, self._loaded))
        return self._request

    def deliver_source(self, request: int, image: QImage, where: str) -> None:
        """A decoded source for `request` arrives (a null image: it could not be decoded)."""
        if request != self._request or self._patch is None:
            return  # a newer click is being served
        self.loading = False
        if image.isNull():
            # a live frame is gone, or the file moved since the scan: the crop is all we have
            self._show(rgb_to_qimage(self._patch.image),
                       f"the crop (the whole image: {where})")
        else:
            self._show(image, where)

    def _show(self, image: QImage, where: str) -> None:
        assert self._patch is not None
        p = self._patch
        y0, x0, y1, x1 = p.box
        self.image = image
        self.canvas.pixmap = QPixmap.fromImage(image)
        self.canvas.update()
        self.caption.setText(
            f"{p.source}  ·  {where}  ·  activation {p.value:.3f}  ·  "
            f"box y {y0}–{y1}, x {x0}–{x1}"
        )

    def caption_text(self) -> str:
        return self.caption.text()

    def wait_idle(self, msecs: int = 5000) -> bool:
        """Wait for a decode in flight (shutdown and tests; never from a paint or click)."""
        return self._pool.waitForDone(msecs)
