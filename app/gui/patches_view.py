"""Top-activating patches of the selected unit: the dataset's top 9 and this session's frames.

Crops become pixmaps lazily, on first paint, so a hidden tab costs nothing per frame; the
live grid is refreshed only when the patches themselves change.
"""

from __future__ import annotations

from pathlib import PurePath

import numpy as np
from PyQt6.QtCore import QEvent, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import (
    QColor,
    QEnterEvent,
    QFont,
    QFontMetrics,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
)
from PyQt6.QtWidgets import (
    QGridLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import Patch
from app.gui import theme
from app.gui.qimages import rgb_to_qimage

GRID_SIDE = 3  # the toolbox's 3×3: nine patches read at a glance
_CAPTION_H = 16


def patches_key(patches: tuple[Patch, ...]) -> tuple[tuple[str, float, tuple[int, ...]], ...]:
    """What identifies a set of patches for display: the same key, the same picture."""
    return tuple((p.source, float(p.value), tuple(p.box)) for p in patches)


def folder_name(path: str) -> str:
    """A scanned folder as a heading names it: its last part (a merge's several, each)."""
    return ", ".join(PurePath(p.strip()).name or p.strip() for p in path.split(", "))


def aspect_fit(size: QSize, w: int, h: int) -> QRectF:
    """The largest rect of aspect w:h centred in `size`."""
    scale = min(size.width() / max(w, 1), size.height() / max(h, 1))
    dw, dh = w * scale, h * scale
    return QRectF((size.width() - dw) / 2, (size.height() - dh) / 2, dw, dh)


class PictureTile(QWidget):
    """One RGB picture, aspect-fit, with a caption underneath: one line, or up to
    `caption_lines` wrapped lines (long captions such as an accentuation's numbers).

    The pixmap is made on first paint, so a tile on a hidden tab costs nothing.
    """

    def __init__(self, parent: QWidget | None = None, caption_lines: int = 1) -> None:
        super().__init__(parent)
        self._caption_h = _CAPTION_H + (caption_lines - 1) * (_CAPTION_H - 3)
        self._caption_lines = caption_lines
        self._image: np.ndarray | None = None
        self._caption = ""
        self._pixmap: QPixmap | None = None
        self._hover = False
        self.setMinimumSize(48, 48 + self._caption_h)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_picture(self, image: np.ndarray | None, caption: str = "",
                    tooltip: str = "") -> None:
        """Show `image` ((h, w, 3) uint8) over `caption`; None empties the tile."""
        self._image = image
        self._caption = caption if image is not None else ""
        self._pixmap = None  # rebuilt on the next paint, only if the tile is visible
        self.setToolTip(tooltip or self._caption)
        self.update()

    def picture(self) -> np.ndarray | None:
        return self._image

    def caption(self) -> str:
        return self._caption

    def caption_fits(self) -> bool:
        """Whether the caption is drawn whole: on one line, or wrapped into the lines the
        tile keeps for it."""
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1.0, 8.0))
        metrics = QFontMetrics(font)
        width = max(self.width() - 4, 8)
        if self._caption_lines == 1:
            return metrics.horizontalAdvance(self._caption) <= width
        flags = int(Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap)
        needed = metrics.boundingRect(0, 0, width, 10_000, flags, self._caption).height()
        return needed <= self._caption_h

    def pixmap(self) -> QPixmap | None:
        if self._pixmap is None and self._image is not None:
            self._pixmap = QPixmap.fromImage(rgb_to_qimage(self._image))
        return self._pixmap

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        area = QSize(self.width(), self.height() - self._caption_h)
        painter.fillRect(0, 0, area.width(), area.height(), QColor(theme.BACKGROUND))
        pixmap = self.pixmap()
        if pixmap is None:
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = aspect_fit(area, pixmap.width(), pixmap.height())
        painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
        if self._hover:
            pen = QPen(QColor(theme.ACCENT))
            pen.setWidthF(2.0)
            painter.setPen(pen)
            painter.drawRect(target.adjusted(1, 1, -1, -1))
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1.0, 8.0))
        painter.setFont(font)
        painter.setPen(QColor(theme.TEXT))
        box = QRectF(2, area.height(), max(self.width() - 4, 8), self._caption_h)
        metrics = painter.fontMetrics()
        if self._caption_lines > 1 and metrics.horizontalAdvance(self._caption) > box.width():
            painter.drawText(box, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
                                      | Qt.TextFlag.TextWordWrap), self._caption)
            return
        # a long caption ends in "…" (its whole text is the tooltip) rather than clipping
        shown = metrics.elidedText(self._caption, Qt.TextElideMode.ElideRight, int(box.width()))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, shown)


class PatchTile(PictureTile):
    """One crop with its activation value underneath; clickable (opens the patch)."""

    clicked = pyqtSignal(object)  # Patch

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.patch: Patch | None = None
        self.setMouseTracking(True)

    def set_patch(self, patch: Patch | None) -> None:
        self.patch = patch
        self.setCursor(
            Qt.CursorShape.PointingHandCursor if patch is not None else Qt.CursorShape.ArrowCursor
        )
        self.set_picture(None if patch is None else patch.image,
                         "" if patch is None else f"{patch.value:.2f}", self.caption_tooltip())

    def caption_tooltip(self) -> str:
        p = self.patch
        if p is None:
            return ""
        y0, x0, y1, x1 = p.box
        return f"{p.source}\nactivation {p.value:.3f}\nbox y {y0}–{y1}, x {x0}–{x1}"

    def enterEvent(self, event: QEnterEvent | None) -> None:
        self._hover = self.patch is not None
        self.update()

    def leaveEvent(self, event: QEvent | None) -> None:
        self._hover = False
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:
        if event is not None and event.button() == Qt.MouseButton.LeftButton and self.patch:
            self.clicked.emit(self.patch)


class PatchGrid(QWidget):
    """3×3 PatchTiles, filled row by row."""

    patch_clicked = pyqtSignal(object)  # Patch

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.tiles: list[PatchTile] = []
        for i in range(GRID_SIDE * GRID_SIDE):
            tile = PatchTile()
            tile.clicked.connect(self.patch_clicked)
            layout.addWidget(tile, *divmod(i, GRID_SIDE))
            self.tiles.append(tile)

    def set_patches(self, patches: tuple[Patch, ...]) -> None:
        for i, tile in enumerate(self.tiles):
            tile.set_patch(patches[i] if i < len(patches) else None)

    def captions(self) -> list[str]:
        """The values as shown, one per filled tile."""
        return [t.caption() for t in self.tiles if t.patch is not None]


class PatchPage(QStackedWidget):
    """A patch grid, or a message (with an optional button) when there are no patches."""

    def __init__(self, button_text: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = PatchGrid()
        empty = QWidget()
        layout = QVBoxLayout(empty)
        layout.addStretch(1)
        self.note = QLabel("")
        self.note.setObjectName("placeholder")
        self.note.setWordWrap(True)
        self.note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.note)
        self.button: QPushButton | None = None
        if button_text:
            self.button = QPushButton(button_text)
            self.button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)
        self.addWidget(self.grid)
        self.addWidget(empty)
        self.show_note("")

    def show_note(self, text: str, button: bool = False) -> None:
        self.grid.set_patches(())
        self.note.setText(text)
        if self.button is not None:
            self.button.setVisible(button)
        self.setCurrentIndex(1)

    def show_patches(self, patches: tuple[Patch, ...]) -> None:
        self.grid.set_patches(patches)
        self.setCurrentIndex(0)

    @property
    def showing_patches(self) -> bool:
        return self.currentIndex() == 0

    def note_text(self) -> str:
        return self.note.text()

    def shown_patches(self) -> list[Patch]:
        """The patches in the grid, in tile order."""
        return [t.patch for t in self.grid.tiles if t.patch is not None]


class TopPatchesPane(QWidget):
    """Two sub-tabs: "Dataset" (a scan's top 9) and "Live" (this session's top frames)."""

    scan_requested = pyqtSignal()
    patch_clicked = pyqtSignal(object)  # Patch

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.info = QLabel(" ")
        self.info.setObjectName("paneInfo")
        self.info.setWordWrap(True)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.dataset = PatchPage("Scan a folder…")
        self.live = PatchPage()
        self.tabs.addTab(self.dataset, "Dataset")
        self.tabs.addTab(self.live, "Live")
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.info)
        assert self.dataset.button is not None
        self.dataset.button.clicked.connect(self.scan_requested)
        self.dataset.grid.patch_clicked.connect(self.patch_clicked)
        self.live.grid.patch_clicked.connect(self.patch_clicked)
        self._live_key: tuple[tuple[str, float, tuple[int, ...]], ...] | None = None
        self._live_seen: tuple[Patch, ...] | None = None
        self.dataset.show_note("Select a unit to see its top patches.")
        self.live.show_note("Frames that excite the selected unit appear here as they stream.")

    def set_loading(self, layer: str, unit: int) -> None:
        """A new unit was selected: drop the old unit's patches until its own arrive."""
        self.dataset.show_note(f"Looking up {layer} · unit {unit}…")
        self.info.setText(" ")

    def set_dataset(self, patches: tuple[Patch, ...], note: str, dataset: str = "") -> None:
        """`dataset`: the scanned folder's path; several scans of a layer may exist, so the
        line says which one these patches come from."""
        if patches:
            self.dataset.show_patches(patches)
            best = max(p.value for p in patches)
            source = f"from {folder_name(dataset)}" if dataset else "of the scanned dataset"
            self.info.setText(f"top {len(patches)} {source} · best {best:.2f}"
                              " · click a crop for the whole image")
            self.info.setToolTip(dataset)
        else:
            self.dataset.show_note(note or "No scan of this layer yet.", button=True)
            self.info.setText(" ")
            self.info.setToolTip("")

    def info_text(self) -> str:
        return self.info.text()

    def set_live(self, patches: tuple[Patch, ...]) -> bool:
        """Show this session's top frames; True when the grid changed (cheap when it did not)."""
        if patches is self._live_seen:
            return False
        self._live_seen = patches
        key = patches_key(patches)
        if key == self._live_key:
            return False
        self._live_key = key
        if patches:
            self.live.show_patches(patches)
        else:
            self.live.show_note("No frame has excited this unit yet.")
        return True
