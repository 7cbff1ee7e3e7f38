"""The activation grid: every channel of the selected layer as one colormapped ImageItem."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QEvent, QObject, QPoint, QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QFontMetrics, QPainterPath, QPen, QResizeEvent
from PyQt6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QWidget,
)
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent

from app.core.messages import Normalization, PreferredGrid
from app.core.tiling import GridGeometry
from app.gui import theme
from app.gui.image_pane import ImageView, Panel, make_image_item


def tint_mosaic(values: np.ndarray, g: GridGeometry) -> np.ndarray:
    """(height, width, 4) uint8 RGBA over the mosaic: each tile orange for a positive
    `values[unit]`, blue for a negative one, opaque in proportion to |value| / max |value|;
    gutters and empty cells clear. Built by broadcasting (it runs on the GUI thread every
    explained frame while the tint is on)."""
    v = np.asarray(values, np.float64) / (float(np.abs(values).max()) or 1.0)
    cells = np.zeros((g.rows * g.cols, 4), np.uint8)
    cells[: g.channels, :3] = np.where((v >= 0)[:, None], (255, 150, 60), (80, 160, 255))
    cells[: g.channels, 3] = (170 * np.abs(v)).astype(np.uint8)
    cell_h, cell_w = g.tile_h + g.pad, g.tile_w + g.pad
    inside = np.zeros((cell_h, cell_w), bool)
    inside[: g.tile_h, : g.tile_w] = True
    mosaic = (cells.reshape(g.rows, 1, g.cols, 1, 4)
              * inside[None, :, None, :, None]).reshape(g.rows * cell_h, g.cols * cell_w, 4)
    return np.ascontiguousarray(mosaic[: g.height, : g.width])


MIN_LABEL_TILE_PX = 24  # a tile narrower than this on screen gets no concept label


class ActivationGrid(Panel):
    """Shows the mosaic, outlines the selected unit, reports hovered and clicked units."""

    unit_hovered = pyqtSignal(object)  # int | None
    unit_clicked = pyqtSignal(int)
    aspect_changed = pyqtSignal(float)  # the pane's shape changed enough to re-tile

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Activations", parent)
        self.pane = ImageView("Loading model…")
        self.image = make_image_item()
        self.pane.view.addItem(self.image)
        # Child of the image so its coordinates are mosaic pixels, whatever the zoom.
        self.highlight = QGraphicsRectItem(self.image)
        pen = QPen(QColor(theme.ACCENT))
        pen.setWidthF(2.0)
        pen.setCosmetic(True)  # stays 2 screen px wide on a 7×7 tile and on a 112×112 one
        self.highlight.setPen(pen)
        self.highlight.setZValue(10)
        self.highlight.hide()
        # The padding between tiles is 0 in the mosaic, the same colour as a silent unit;
        # painting it (and the unused cells of the last row) in the background colour keeps
        # tiles apart. Rebuilt only when the geometry changes.
        self.gutters = QGraphicsPathItem(self.image)
        self.gutters.setPen(QPen(Qt.PenStyle.NoPen))
        self.gutters.setBrush(QBrush(QColor(theme.BACKGROUND)))
        self.gutters.setZValue(5)
        # filling ~70 rects through the view transform costs ~2 ms a paint; cached, it is a blit
        self.gutters.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # deleted (ablated) units: a red cross over each tile, rebuilt only when the set or
        # the geometry changes
        self.ablation_marks = QGraphicsPathItem(self.image)
        marks_pen = QPen(QColor(theme.ERROR))
        marks_pen.setWidthF(2.0)
        marks_pen.setCosmetic(True)
        self.ablation_marks.setPen(marks_pen)
        self.ablation_marks.setZValue(8)
        self._ablated: tuple[int, ...] = ()
        self._marks_key: tuple[GridGeometry | None, tuple[int, ...]] = (None, ())
        # each tile tinted by its channel's attribution to the explained class (orange for,
        # blue against), when asked: an RGBA picture over the mosaic
        self.tint = make_image_item()
        self.tint.setZValue(6)
        self.tint.hide()
        self.pane.view.addItem(self.tint)
        self._tint_values: np.ndarray | None = None
        # concept labels of the shown layer's units (dissection), one text per labelled tile
        self._labels: dict[int, str] = {}
        self._label_items: list[tuple[int, pg.TextItem]] = []
        self._labels_key: tuple[GridGeometry | None, tuple[tuple[int, str], ...], int] = (
            None, (), 0)
        self._tile_px = 0.0
        self.layout_.addWidget(self.pane, 1)

        footer = QHBoxLayout()
        footer.setContentsMargins(0, 0, 0, 0)
        self._hover_label = QLabel("")
        self._hover_label.setObjectName("paneInfo")
        self._hover_label.setMinimumWidth(260)
        hint = QLabel("click a tile · arrows move · h for keys")
        hint.setObjectName("paneInfo")
        hint.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        footer.addWidget(self._hover_label, 1)
        footer.addWidget(hint)
        self.layout_.addLayout(footer)

        # not `geometry`: that name is QWidget's own method
        self._geometry: GridGeometry | None = None
        self._hovered: int | None = None
        scene = self.pane.graphics.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self.pane.graphics.viewport().installEventFilter(self)  # to clear hover on leave
        self._aspect = 1.0

    def aspect(self) -> float:
        """Width / height of the pane, in steps of 0.1: the engine lays tiles out to fill it."""
        return self._aspect

    def resizeEvent(self, event: QResizeEvent | None) -> None:
        super().resizeEvent(event)
        if self._labels:
            self._update_labels()  # the tiles' screen size changed: re-fit the words
        size = self.pane.size()
        if size.height() > 0 and size.width() > 0:
            aspect = round(min(max(size.width() / size.height(), 0.2), 5.0), 1)
            if aspect != self._aspect:
                self._aspect = aspect
                self.aspect_changed.emit(aspect)

    def set_lut(self, lut: np.ndarray) -> None:
        self.image.setLookupTable(lut)

    def set_mosaic(self, mosaic: np.ndarray, geometry: GridGeometry) -> None:
        """Show a (height, width) uint8 mosaic (or RGB); re-fit the view only on a new layout."""
        self.image.setImage(mosaic, autoLevels=False, levels=(0, 255))
        if not self.pane.showing_graphics:
            self.pane.show_graphics()  # before any autoRange: a hidden view has no size
        if geometry != self._geometry:
            self._geometry = geometry
            self.gutters.setPath(gutter_path(geometry))
            self.pane.view.autoRange(padding=0.01)
            self._update_ablation_marks()
            self._update_labels()

    def set_tile_tint(self, values: np.ndarray | None) -> None:
        """Tint each tile by `values[unit]` (signed, scaled by the largest); None: no tint."""
        g = self._geometry
        if values is None or g is None or len(values) != g.channels:
            self._tint_values = None
            self.tint.hide()
            return
        self._tint_values = values
        self.tint.setImage(tint_mosaic(values, g), autoLevels=False, levels=(0, 255))
        self.tint.setRect(QRectF(0, 0, g.width, g.height))
        self.tint.show()

    def tint_values(self) -> np.ndarray | None:
        """The attributions the tiles are tinted by, None while untinted."""
        return self._tint_values if self.tint.isVisible() else None

    def set_tile_labels(self, labels: dict[int, str]) -> None:
        """Write each unit's concept label on its tile ({}: none)."""
        self._labels = dict(labels)
        self._update_labels()

    def tile_labels(self) -> dict[int, str]:
        """The labels given for the shown layer, by unit (whole, as `set_tile_labels` had them)."""
        return {unit: self._labels[unit] for unit, _ in self._label_items}

    def drawn_tile_labels(self) -> dict[int, tuple[str, float]]:
        """What each tile shows: (its label as drawn, elided to the tile, the tile's width
        in screen pixels); a tile too small for any text draws none."""
        return {unit: (item.toPlainText(), self._tile_px) for unit, item in self._label_items}

    def _update_labels(self) -> None:
        g = self._geometry
        tile_px = self._tile_screen_width()
        key = (g, tuple(sorted(self._labels.items())), round(tile_px))
        if key == self._labels_key:
            return
        self._labels_key = key
        self._tile_px = tile_px
        for _, item in self._label_items:
            self.pane.view.removeItem(item)
        self._label_items = []
        if g is None or tile_px < MIN_LABEL_TILE_PX:
            return  # 320 tiles of 7×7 have no room for words: the hover line names them
        metrics = QFontMetrics(self.font())
        room = int(tile_px) - 4  # the label's own padding
        for unit, text in sorted(self._labels.items()):
            if not 0 <= unit < g.channels:
                continue
            # cut to its tile, so labels never run into their neighbours
            shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, room)
            if shown in ("", "…"):
                continue
            y, x = g.tile_origin(unit)
            item = pg.TextItem(shown, color=theme.TEXT, fill=pg.mkBrush(theme.PANEL + "c0"),
                               anchor=(0, 0))
            item.setPos(x, y)
            item.setZValue(12)
            self.pane.view.addItem(item, ignoreBounds=True)
            self._label_items.append((unit, item))

    def _tile_screen_width(self) -> float:
        """A tile's width on screen, in pixels (0 before a mosaic is shown)."""
        g = self._geometry
        if g is None:
            return 0.0
        pixel = self.pane.view.viewPixelSize()[0]
        return g.tile_w / pixel if pixel > 0 else 0.0

    def set_ablated(self, units: tuple[int, ...]) -> None:
        """Mark these units of the shown layer as deleted (a red cross over each tile)."""
        self._ablated = tuple(sorted(units))
        self._update_ablation_marks()

    @property
    def marked_units(self) -> tuple[int, ...]:
        """The units crossed out on screen."""
        g = self._marks_key[0]
        return () if g is None else tuple(u for u in self._marks_key[1] if 0 <= u < g.channels)

    def _update_ablation_marks(self) -> None:
        key = (self._geometry, self._ablated)
        if key == self._marks_key:
            return
        self._marks_key = key
        g = self._geometry
        path = QPainterPath()
        if g is not None:
            for unit in self._ablated:
                if not 0 <= unit < g.channels:
                    continue
                y, x = g.tile_origin(unit)
                path.addRect(QRectF(x, y, g.tile_w, g.tile_h))
                path.moveTo(x, y)
                path.lineTo(x + g.tile_w, y + g.tile_h)
                path.moveTo(x + g.tile_w, y)
                path.lineTo(x, y + g.tile_h)
        self.ablation_marks.setPath(path)

    def set_selected(self, unit: int | None) -> None:
        """Outline `unit`'s tile; None (or a unit the shown layer lacks) hides the outline."""
        g = self._geometry
        if g is None or unit is None or not 0 <= unit < g.channels:
            self.highlight.hide()
            return
        y, x = g.tile_origin(unit)
        # half a pixel outside the tile, so the outline sits on the padding, not the data
        self.highlight.setRect(QRectF(x - 0.5, y - 0.5, g.tile_w + 1.0, g.tile_h + 1.0))
        self.highlight.show()

    def highlighted_rect(self) -> tuple[float, float, float, float] | None:
        """(x, y, w, h) of the selection outline in mosaic pixels; None while hidden."""
        if not self.highlight.isVisible():
            return None
        r = self.highlight.rect()
        return (r.x(), r.y(), r.width(), r.height())

    def show_activation_title(
        self, layer: str, geometry: GridGeometry, normalization: Normalization
    ) -> None:
        norm = "per-channel" if normalization == Normalization.PER_CHANNEL else "per-layer"
        self.set_title(
            f"{layer} · {geometry.channels} channel{'s' if geometry.channels != 1 else ''} of "
            f"{geometry.tile_h}×{geometry.tile_w}"
            f" · {norm} scale"
        )

    def show_preferred_title(self, shown: PreferredGrid) -> None:
        channels = shown.geometry.channels
        complete = len(shown.rendered) == channels
        self.set_title(
            f"{shown.layer} · preferred images of {len(shown.rendered)} of {channels} "
            "units · g: back",
            "g shows the activations again" + ("" if complete else
                                               "; the Preferred tab renders the whole layer"),
        )

    def show_hover_values(self, unit: int, maximum: float, mean: float, name: str = "") -> None:
        named = f" · {name}" if name else ""
        self._hover_label.setText(f"unit {unit}{named}   max {maximum:.2f}   mean {mean:.2f}")

    def clear_hover_values(self) -> None:
        self._hover_label.setText("")

    def hover_text(self) -> str:
        return self._hover_label.text()

    def set_placeholder(self, text: str) -> None:
        self.pane.set_placeholder(text)

    def placeholder_text(self) -> str:
        return self.pane.placeholder_text()

    def showing_image(self) -> bool:
        """False while the placeholder text stands in for the mosaic."""
        return self.pane.showing_graphics

    def shown_image(self) -> np.ndarray | None:
        """The array on screen, as handed to `set_mosaic` (not a copy)."""
        image: np.ndarray | None = self.image.image
        return image

    def lut(self) -> np.ndarray | None:
        table: np.ndarray | None = self.image.lut
        return table

    def shown_geometry(self) -> GridGeometry | None:
        """The layout of what is on screen: the activations' or the preferred images'."""
        return self._geometry

    @property
    def hovered_unit(self) -> int | None:
        return self._hovered

    def unit_at_scene(self, scene_pos: QPointF) -> int | None:
        """The unit under a scene position, or None off the tiles."""
        if self._geometry is None or self.image.image is None:
            return None
        p = self.image.mapFromScene(scene_pos)
        return self._geometry.unit_at(p.y(), p.x())

    def scene_pos_of_unit(self, unit: int) -> QPointF:
        """Scene position of the centre of `unit`'s tile (tests and keyboard hover use it)."""
        assert self._geometry is not None
        y, x = self._geometry.tile_origin(unit)
        centre = QPointF(x + self._geometry.tile_w / 2, y + self._geometry.tile_h / 2)
        return self.image.mapToScene(centre)

    def mouse_area(self) -> QWidget:
        """The widget that receives clicks and hovers on the tiles."""
        return self.pane.mouse_area()

    def mosaic_position(self, y: float, x: float) -> QPoint:
        """Where mosaic pixel (y, x) is drawn, in `mouse_area()` coordinates."""
        return self.pane.viewport_pos(self.image.mapToScene(QPointF(x, y)))

    def tile_position(self, unit: int) -> QPoint:
        """Where the centre of `unit`'s tile is drawn, in `mouse_area()` coordinates."""
        return self.pane.viewport_pos(self.scene_pos_of_unit(unit))

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        if event is not None and event.type() == QEvent.Type.Leave and self._hovered is not None:
            self._hovered = None
            self.unit_hovered.emit(None)
        return False

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        unit = self.unit_at_scene(scene_pos)
        if unit != self._hovered:
            self._hovered = unit
            self.unit_hovered.emit(unit)

    def _on_mouse_clicked(self, event: MouseClickEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        unit = self.unit_at_scene(event.scenePos())
        if unit is not None:
            event.accept()
            self.unit_clicked.emit(unit)


def gutter_path(g: GridGeometry) -> QPainterPath:
    """The mosaic's padding strips and empty trailing cells, in mosaic pixels."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.WindingFill)
    if g.pad > 0:
        for r in range(1, g.rows):
            path.addRect(QRectF(0, r * (g.tile_h + g.pad) - g.pad, g.width, g.pad))
        for c in range(1, g.cols):
            path.addRect(QRectF(c * (g.tile_w + g.pad) - g.pad, 0, g.pad, g.height))
    empty = g.rows * g.cols - g.channels
    if empty:
        y, x = g.tile_origin(g.channels - 1)
        left = x + g.tile_w
        path.addRect(QRectF(left, y, g.width - left, g.height - y))
    return path
