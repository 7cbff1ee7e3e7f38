"""The Atlas tab: a layer's activation atlas, zoomable, its cells hovered, clicked, filtered
by class and lit by the live frame.

One QGraphicsScene holds the atlas as the command draws it (`analyses/atlas/draw.py`): each
populated cell at its grid place, its square shrunk with its sample count relative to the
densest cell (square root, so sparse cells stay visible), its icon in it or a density shade
while it has none. The wheel zooms about the mouse, a drag pans. Cells are found from the
mouse by their grid place (one dict lookup), not by per-item hover handlers.

Hover shows the cell large in the side panel: its icon, label, count and score, and the
image regions of its top dataset samples. A click
emits `cell_clicked(index)`: the feature selects that unit of the atlas's direction layer.
The class filter (the article's class atlases) dims every cell whose label is not the
chosen class. The live frame's placement (`set_lit`) outlines the cells its positions fell
into, the outline's opacity by the cell's share of the frame's activation; the mouse over
the input marks the cell of the position under it (`mark`, dashed blue).
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QMouseEvent, QPainter, QPen, QPixmap, QWheelEvent
from PyQt6.QtWidgets import (
    QComboBox,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.atlas_messages import AtlasCell, AtlasReady
from app.gui import theme
from app.gui.qimages import rgb_to_qimage

CELL_PX = 48
ALL_CLASSES = "all classes"
DIMMED = 0.12  # opacity of a cell the class filter leaves out
LIT = QColor(theme.ACCENT)
MARKED = QColor(theme.FROZEN)
HOVER_ICON_PX = 192
EXAMPLES = 3  # top dataset samples shown under the hovered cell
EXAMPLE_PX = (HOVER_ICON_PX - 8) // EXAMPLES
NO_ATLAS = ("No atlas yet. Analysis → Activation atlas of this layer on a folder… makes one "
            "(or `deepvis atlas FOLDER --layer L`).")


def rgb_pixmap(rgb: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(rgb_to_qimage(rgb))


def cell_square(cell: AtlasCell, densest: int) -> tuple[int, int, int]:
    """(x0, y0, side) in scene pixels, as `draw_atlas` places it."""
    frac = float(np.sqrt(cell.count / max(densest, 1)))
    size = max(4, round(CELL_PX * (0.35 + 0.65 * frac)))
    return (cell.x * CELL_PX + (CELL_PX - size) // 2,
            cell.y * CELL_PX + (CELL_PX - size) // 2, size)


class AtlasCanvas(QGraphicsView):
    """The scene; wheel zoom, drag pan, and the cell under the mouse."""

    hovered = pyqtSignal(int)  # cell index, -1: none
    clicked = pyqtSignal(int)

    def __init__(self) -> None:
        super().__init__()
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setMouseTracking(True)
        self.setBackgroundBrush(QBrush(QColor(theme.BACKGROUND)))
        self.index: dict[tuple[int, int], int] = {}
        self._hover = -1
        self._pressed_at = QPointF()

    def cell_at(self, scene: QPointF) -> int:
        if scene.x() < 0 or scene.y() < 0:
            return -1
        return self.index.get((int(scene.x() // CELL_PX), int(scene.y() // CELL_PX)), -1)

    def fit(self) -> None:
        rect = self.sceneRect()
        if not rect.isEmpty():
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)

    def wheelEvent(self, event: QWheelEvent | None) -> None:
        if event is None:
            return
        step = event.angleDelta().y()
        if step:
            factor = 1.2 if step > 0 else 1 / 1.2
            zoom = self.transform().m11() * factor
            if 0.05 < zoom < 40:
                self.scale(factor, factor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent | None) -> None:
        super().mouseMoveEvent(event)
        if event is not None:
            i = self.cell_at(self.mapToScene(event.position().toPoint()))
            if i != self._hover:
                self._hover = i
                self.hovered.emit(i)

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:
        super().mouseReleaseEvent(event)
        if event is None or event.button() != Qt.MouseButton.LeftButton:
            return
        if (event.position() - self._pressed_at).manhattanLength() <= 4:  # not a pan's end
            i = self.cell_at(self.mapToScene(event.position().toPoint()))
            if i >= 0:
                self.clicked.emit(i)

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        if event is not None:
            self._pressed_at = event.position()
        super().mousePressEvent(event)


class AtlasPane(QWidget):
    """The tab: a bar (title, class filter, make…), the canvas and the hover panel."""

    cell_clicked = pyqtSignal(int)  # the cell's index: its unit in the direction layer
    run_requested = pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        self.atlas: AtlasReady | None = None
        self._items: list[QGraphicsRectItem | QGraphicsPixmapItem] = []
        self._rings: list[QGraphicsRectItem] = []
        self._marker: QGraphicsRectItem | None = None
        self.marked = -1  # the cell the hovered input position fell into
        self._filter: str | None = None
        self._lit: np.ndarray | None = None

        self.title = QLabel(NO_ATLAS)
        self.title.setWordWrap(True)
        self.filter = QComboBox()
        self.filter.addItem(ALL_CLASSES)
        self.filter.setToolTip("Show only the cells that support a class (a class atlas)")
        self.filter.currentTextChanged.connect(self._on_filter_text)
        make = QPushButton("Make atlas…")
        make.clicked.connect(self.run_requested)
        bar = QHBoxLayout()
        bar.addWidget(self.title, 1)
        bar.addWidget(self.filter)
        bar.addWidget(make)

        self.canvas = AtlasCanvas()
        self.canvas.hovered.connect(self.show_cell)
        self.canvas.clicked.connect(self.cell_clicked)
        self.hover_icon = QLabel()
        self.hover_icon.setFixedSize(HOVER_ICON_PX, HOVER_ICON_PX)
        self.hover_icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hover_text = QLabel("Hover a cell: its icon, class and count. Click: select it "
                                 "as a unit.")
        self.hover_text.setWordWrap(True)
        self.hover_text.setFixedWidth(HOVER_ICON_PX)
        self.examples = [QLabel() for _ in range(EXAMPLES)]
        strip = QHBoxLayout()
        strip.setSpacing(4)
        for label in self.examples:
            label.setFixedSize(EXAMPLE_PX, EXAMPLE_PX)
            strip.addWidget(label)
        strip.addStretch(1)
        side = QVBoxLayout()
        side.addWidget(self.hover_icon)
        side.addWidget(self.hover_text)
        side.addLayout(strip)
        side.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.canvas, 1)
        body.addLayout(side)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(bar)
        outer.addLayout(body, 1)

    # -- the atlas ---------------------------------------------------------------------------
    def show_atlas(self, atlas: AtlasReady) -> None:
        """Draw `atlas`; the class filter keeps its class when the new atlas has it."""
        first = self.atlas is None or (self.atlas.layer, self.atlas.grid) != (atlas.layer,
                                                                              atlas.grid)
        # the same cells again (their icons now): a still frame sends no new placement
        same = (self.atlas is not None and self.atlas.directions_folder
                == atlas.directions_folder and len(self.atlas.cells) == len(atlas.cells))
        lit, marked = (self._lit, self.marked) if same else (None, -1)
        self.atlas = atlas
        scene = self.canvas.scene()
        assert scene is not None
        scene.clear()
        self._items, self._rings, self._lit = [], [], None
        self._marker, self.marked = None, -1
        self.canvas.index = {(c.x, c.y): i for i, c in enumerate(atlas.cells)}
        densest = max((c.count for c in atlas.cells), default=1)
        for cell in atlas.cells:
            x0, y0, size = cell_square(cell, densest)
            item: QGraphicsRectItem | QGraphicsPixmapItem
            if cell.icon is not None:
                pix = rgb_pixmap(cell.icon).scaled(
                    size, size, Qt.AspectRatioMode.IgnoreAspectRatio,
                    Qt.TransformationMode.SmoothTransformation)
                item = QGraphicsPixmapItem(pix)
                item.setPos(x0, y0)
            else:
                frac = float(np.sqrt(cell.count / densest))
                shade = int(220 - 180 * frac)
                item = QGraphicsRectItem(QRectF(x0, y0, size, size))
                item.setBrush(QBrush(QColor(shade, shade, 255 - (220 - shade) // 3)))
                item.setPen(QPen(Qt.PenStyle.NoPen))
            item.setToolTip(f"({cell.x},{cell.y}) {cell.label}: {cell.count} samples")
            scene.addItem(item)
            self._items.append(item)
            ring = QGraphicsRectItem(QRectF(cell.x * CELL_PX + 1, cell.y * CELL_PX + 1,
                                            CELL_PX - 2, CELL_PX - 2))
            ring.setPen(QPen(LIT, 4))
            ring.setVisible(False)
            ring.setZValue(1)
            scene.addItem(ring)
            self._rings.append(ring)
        side = atlas.grid * CELL_PX
        scene.setSceneRect(QRectF(0, 0, side, side))
        border = scene.addRect(QRectF(0, 0, side, side), QPen(QColor(theme.BORDER)),
                               QBrush(QColor(theme.PANEL)))
        if border is not None:
            border.setZValue(-1)
        icons = "" if atlas.icons_done else "; rendering the icons…"
        self.title.setText(f"{atlas.layer}: {len(atlas.cells)} cells of {atlas.grid}×"
                           f"{atlas.grid} from {atlas.images} images{icons}. Cells are the "
                           f"units of {atlas.direction_layer}.")
        keep = self._filter
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItems([ALL_CLASSES, *atlas.labels()])
        self.filter.blockSignals(False)
        self.set_filter(keep if keep in atlas.labels() else None)
        self.set_lit(lit)
        if marked >= 0:
            self.mark(marked)
        if first:
            self.canvas.fit()

    def clear(self) -> None:
        """No atlas (another model was loaded: its cells mean nothing here)."""
        self.atlas = None
        scene = self.canvas.scene()
        if scene is not None:
            scene.clear()
        self._items, self._rings, self._lit, self._marker, self.marked = [], [], None, None, -1
        self.canvas.index = {}
        self.title.setText(NO_ATLAS)
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItem(ALL_CLASSES)
        self.filter.blockSignals(False)
        self._filter = None

    def cell_centre(self, index: int) -> QPointF:
        """Where cell `index` sits in the scene (tests click it through the view)."""
        assert self.atlas is not None
        c = self.atlas.cells[index]
        return QPointF((c.x + 0.5) * CELL_PX, (c.y + 0.5) * CELL_PX)

    # -- the class filter --------------------------------------------------------------------
    def _on_filter_text(self, text: str) -> None:
        self.set_filter(None if text in ("", ALL_CLASSES) else text)

    def set_filter(self, label: str | None) -> None:
        """Only the cells labelled `label` at full strength (None: all of them)."""
        self._filter = label
        shown = self.filter.findText(label or ALL_CLASSES)
        if shown >= 0 and self.filter.currentIndex() != shown:
            self.filter.blockSignals(True)
            self.filter.setCurrentIndex(shown)
            self.filter.blockSignals(False)
        if self.atlas is None:
            return
        for cell, item in zip(self.atlas.cells, self._items, strict=True):
            item.setOpacity(1.0 if label is None or cell.label == label else DIMMED)

    def shown_cells(self) -> tuple[int, ...]:
        """The cells at full strength (not dimmed by the filter)."""
        return tuple(i for i, item in enumerate(self._items) if item.opacity() == 1.0)

    # -- hover -------------------------------------------------------------------------------
    def show_cell(self, index: int) -> None:
        if self.atlas is None or not 0 <= index < len(self.atlas.cells):
            return
        c = self.atlas.cells[index]
        if c.icon is not None:
            self.hover_icon.setPixmap(rgb_pixmap(c.icon).scaled(
                HOVER_ICON_PX, HOVER_ICON_PX, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))
        else:
            self.hover_icon.clear()
            self.hover_icon.setText("(no icon yet)")
        lit = ""
        if self._lit is not None and self._lit.sum() > 0:
            lit = f"\nthis frame: {100 * self._lit[index] / self._lit.sum():.0f} %"
        self.hover_text.setText(f"{c.label}\ncell ({c.x},{c.y}), {c.count} samples\n"
                                f"score {c.score:.3g}{lit}\nclick: unit {index} of "
                                f"{self.atlas.direction_layer}"
                                + ("\ntop samples:" if c.examples else ""))
        for label, k in zip(self.examples, range(EXAMPLES), strict=True):
            if k < len(c.examples):
                label.setPixmap(rgb_pixmap(c.examples[k]).scaled(
                    EXAMPLE_PX, EXAMPLE_PX, Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation))
            else:
                label.clear()

    def shown_examples(self) -> int:
        """How many top samples the side panel shows."""
        return sum(1 for label in self.examples
                   if label.pixmap() is not None and not label.pixmap().isNull())

    # -- the live frame ----------------------------------------------------------------------
    def set_lit(self, weights: np.ndarray | None) -> None:
        """Outline the cells this frame fell into, by their share of it (None: none)."""
        self._lit = None if weights is None or len(weights) != len(self._rings) else weights
        top = float(self._lit.max()) if self._lit is not None and self._lit.size else 0.0
        for i, ring in enumerate(self._rings):
            on = self._lit is not None and top > 0 and self._lit[i] > 0
            ring.setVisible(bool(on))
            if on and self._lit is not None:
                ring.setOpacity(0.25 + 0.75 * float(self._lit[i]) / top)

    def mark(self, index: int) -> None:
        """Mark cell `index` (where the hovered input position fell) and show it; -1: none."""
        if self.atlas is None or not -1 <= index < len(self.atlas.cells):
            return
        self.marked = index
        scene = self.canvas.scene()
        if self._marker is None and scene is not None:
            self._marker = scene.addRect(QRectF(0, 0, CELL_PX, CELL_PX),
                                         QPen(MARKED, 3, Qt.PenStyle.DashLine))
            if self._marker is not None:
                self._marker.setZValue(2)
        if self._marker is not None:
            self._marker.setVisible(index >= 0)
            if index >= 0:
                c = self.atlas.cells[index]
                self._marker.setPos(c.x * CELL_PX, c.y * CELL_PX)
        if index >= 0:
            self.show_cell(index)

    def lit_cells(self) -> tuple[int, ...]:
        return tuple(i for i, ring in enumerate(self._rings) if ring.isVisible())
