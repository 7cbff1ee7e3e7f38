"""Image files in the window: decoded on a pool thread, painted aspect-fit.

Reading and decoding a file is I/O the GUI thread must not wait on (a slow disk, a network
folder). QImage may be made off the GUI thread (QPixmap may not), so a pool thread decodes
and a queued signal brings the image back; a newer request makes older ones stale.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, QRectF, QRunnable, QThreadPool, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPixmap
from PyQt6.QtWidgets import QWidget

from app.gui import theme
from app.gui.patches_view import aspect_fit


class ImageFiles(QObject):
    """`load(path)` → `loaded(request, image)` on the GUI thread (a null image if unreadable)."""

    loaded = pyqtSignal(int, QImage)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self.request = 0  # the newest request's number: an answer to an older one is stale

    def load(self, path: str) -> int:
        self.request += 1
        self._pool.start(_Decode(self.request, path, self))
        return self.request

    def forget(self) -> None:
        """Make every request so far stale: nothing loading now is wanted any more."""
        self.request += 1

    def wait_idle(self, msecs: int = 5000) -> bool:
        """Wait for a decode in flight (shutdown and tests; never from a paint or click)."""
        return self._pool.waitForDone(msecs)


class _Decode(QRunnable):
    def __init__(self, request: int, path: str, files: ImageFiles) -> None:
        super().__init__()
        self.request, self.path, self.files = request, path, files

    def run(self) -> None:
        self.files.loaded.emit(self.request, QImage(self.path))


class ImageCanvas(QWidget):
    """Paints one pixmap aspect-fit (smooth), on the window's background."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pixmap: QPixmap | None = None
        self.setMinimumSize(320, 240)

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(theme.BACKGROUND))
        if self.pixmap is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = aspect_fit(self.size(), self.pixmap.width(), self.pixmap.height())
        painter.drawPixmap(target, self.pixmap, QRectF(self.pixmap.rect()))
