"""The selected unit: a panel of tabs whose first, "Unit", is its enlarged map.

The map is colormapped with nearest-neighbour pixels; clicking a cell picks the position to
attribute. Below it, live ablation: delete the unit, the list of deleted units, restore.
The window adds the other tabs (`UnitTab`) with `add_tab`; panes it feeds per frame ask
`current_tab()` so a hidden tab costs nothing.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from PyQt6.QtCore import QPoint, QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QPen
from PyQt6.QtWidgets import (
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent

from app.core.messages import AblationMode
from app.gui.image_pane import ImageView, Panel, make_image_item

ABLATION_MODE_TEXT = {
    AblationMode.ZERO: "zero",
    AblationMode.MEAN: "mean (running)",
}




class UnitTab(StrEnum):
    """The tabs of the unit pane, by title, in order."""

    UNIT = "Unit"
    PATCHES = "Top patches"
    PREFERRED = "Preferred"
    ATTRIBUTION = "Attribution"


def ablated_row_text(layer: str, unit: int) -> str:
    return f"{layer}:{unit}"


class UnitPane(Panel):
    """Title "layer · unit N" over tabs; the "Unit" tab holds the map, values and ablation."""

    position_clicked = pyqtSignal(int, int)  # (y, x) in the unit's map
    delete_clicked = pyqtSignal()
    restore_requested = pyqtSignal(object)  # list[tuple[str, int]]
    restore_all_requested = pyqtSignal()
    ablation_mode_changed = pyqtSignal(object)  # AblationMode
    tab_changed = pyqtSignal(str)  # the title (a UnitTab value) of the tab now shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Selected unit", parent)
        self._tabs = QTabWidget()
        self._tabs.setDocumentMode(True)
        self._tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.layout_.addWidget(self._tabs, 1)

        unit_tab = QWidget()
        layout = QVBoxLayout(unit_tab)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.pane = ImageView("Loading model…")
        self.image = make_image_item()  # QPainter scales it without smoothing: crisp pixels
        self.pane.view.addItem(self.image)
        # the attributed position: one map cell outlined, in map pixels whatever the zoom
        self.position_marker = QGraphicsRectItem(self.image)
        pen = QPen(QColor("#ffffff"))
        pen.setWidthF(2.0)
        pen.setCosmetic(True)
        self.position_marker.setPen(pen)
        self.position_marker.setZValue(10)
        self.position_marker.hide()
        self.values = QLabel(" ")
        self.values.setObjectName("paneInfo")
        self.values.setWordWrap(True)
        layout.addWidget(self.pane, 1)
        layout.addWidget(self.values)
        layout.addWidget(self._build_ablation_box())
        self._tabs.addTab(unit_tab, UnitTab.UNIT)
        self._shape: tuple[int, ...] | None = None
        self.pane.graphics.scene().sigMouseClicked.connect(self._on_map_clicked)
        self._tabs.currentChanged.connect(self._on_tab_index_changed)

    def tabs_width(self) -> int:
        """The width the tab titles need side by side, margins included."""
        bar = self._tabs.tabBar()
        assert bar is not None  # a QTabWidget always has one
        return bar.sizeHint().width() + 12

    def tabs_fit(self) -> bool:
        """Whether every tab title is fully shown (no scroll arrows)."""
        bar = self._tabs.tabBar()
        assert bar is not None
        return bar.count() == 0 or bar.tabRect(bar.count() - 1).right() < bar.width()

    def _build_ablation_box(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 2, 0, 0)
        layout.setSpacing(3)
        row = QHBoxLayout()
        self.delete_button = QPushButton("Delete unit  (d)")
        self.delete_button.setToolTip("Delete this unit from the network, live: predictions "
                                      "then show the intact and the ablated net side by side")
        self.delete_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.delete_button.clicked.connect(self.delete_clicked)
        self.mode_combo = QComboBox()
        self.mode_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mode_combo.setToolTip("What a deleted unit outputs: 0, or its running mean")
        self.mode_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.mode_combo.setMinimumContentsLength(8)
        for mode, text in ABLATION_MODE_TEXT.items():
            self.mode_combo.addItem(f"replace by {text}", mode)
        self.mode_combo.currentIndexChanged.connect(self._on_mode_index_changed)
        row.addWidget(self.delete_button)
        row.addWidget(self.mode_combo, 1)
        layout.addLayout(row)

        self.deleted_label = QLabel("No units deleted · d deletes the selected one")
        self.deleted_label.setObjectName("paneInfo")
        layout.addWidget(self.deleted_label)
        list_row = QHBoxLayout()
        self.deleted_list = QListWidget()
        self.deleted_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.deleted_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.deleted_list.setMaximumHeight(76)
        buttons = QVBoxLayout()
        self.restore_button = QPushButton("Restore")
        self.restore_button.setToolTip("Restore the units selected in the list")
        self.restore_all_button = QPushButton("Restore all")
        for button in (self.restore_button, self.restore_all_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.restore_button.clicked.connect(self._on_restore_clicked)
        self.restore_all_button.clicked.connect(self.restore_all_requested)
        list_row.addWidget(self.deleted_list, 1)
        list_row.addLayout(buttons)
        self.deleted_box = QWidget()
        self.deleted_box.setLayout(list_row)
        list_row.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.deleted_box)
        self.deleted_box.hide()
        return box

    def set_lut(self, lut: np.ndarray) -> None:
        self.image.setLookupTable(lut)

    def add_tab(self, widget: QWidget, tab: UnitTab) -> None:
        self._tabs.addTab(widget, tab.value)

    def current_tab(self) -> str:
        """The title of the tab shown (compare with `UnitTab`)."""
        return self._tabs.tabText(self._tabs.currentIndex())

    def show_tab(self, tab: UnitTab) -> None:
        for index in range(self._tabs.count()):
            if self._tabs.tabText(index) == tab.value:
                self._tabs.setCurrentIndex(index)
                return
        raise KeyError(tab)

    def set_unit(self, layer: str, unit: int, name: str = "") -> None:
        """The title: which unit the pane shows (`name`: what it stands for, a class)."""
        text = f"{layer} · unit {unit}" + (f" · {name}" if name else "")
        self.set_title(text, tooltip=text)

    def set_placeholder(self, text: str) -> None:
        self.pane.set_placeholder(text)

    def placeholder_text(self) -> str:
        return self.pane.placeholder_text()

    def set_map(self, heat: np.ndarray) -> None:
        """Show an (h, w) uint8 map, re-fitting the view when its size changes."""
        self.image.setImage(heat, autoLevels=False, levels=(0, 255))
        if not self.pane.showing_graphics:
            self.pane.show_graphics()  # before any autoRange: a hidden view has no size
        if heat.shape != self._shape:
            self._shape = heat.shape
            self.pane.view.autoRange(padding=0.02)

    def set_values(self, text: str) -> None:
        self.values.setText(text)

    def values_text(self) -> str:
        return self.values.text()

    def shown_map(self) -> np.ndarray | None:
        image: np.ndarray | None = self.image.image
        return image

    def set_position(self, position: tuple[int, int] | None) -> None:
        """Outline the map cell being attributed; None hides the outline."""
        if position is None:
            self.position_marker.hide()
            return
        y, x = position
        self.position_marker.setRect(QRectF(x, y, 1.0, 1.0))
        self.position_marker.show()

    def marked_position(self) -> tuple[int, int] | None:
        """The (y, x) cell outlined as attributed; None while no cell is."""
        if not self.position_marker.isVisible():
            return None
        r = self.position_marker.rect()
        return (int(r.y()), int(r.x()))

    def scene_pos_of_cell(self, y: int, x: int) -> QPointF:
        """Scene position of the centre of map cell (y, x) (tests click with it)."""
        return self.image.mapToScene(QPointF(x + 0.5, y + 0.5))

    def cell_at_scene(self, scene_pos: QPointF) -> tuple[int, int]:
        """The (y, x) map cell under a scene position (it may lie outside the map)."""
        p = self.image.mapFromScene(scene_pos)
        return int(np.floor(p.y())), int(np.floor(p.x()))

    def mouse_area(self) -> QWidget:
        """The widget that receives clicks on the map."""
        return self.pane.mouse_area()

    def cell_position(self, y: int, x: int) -> QPoint:
        """Where the centre of map cell (y, x) is drawn, in `mouse_area()` coordinates."""
        return self.pane.viewport_pos(self.scene_pos_of_cell(y, x))

    def set_deleted(self, rows: list[tuple[str, int]], current_deleted: bool) -> None:
        """The deleted units, as layer:unit rows; `current_deleted`: the selected one is."""
        self.deleted_list.clear()
        for layer, unit in rows:
            item = QListWidgetItem(ablated_row_text(layer, unit))
            item.setData(Qt.ItemDataRole.UserRole, (layer, unit))
            self.deleted_list.addItem(item)
        self.deleted_box.setVisible(bool(rows))
        self.deleted_label.setText(
            f"Deleted units ({len(rows)}):" if rows
            else "No units deleted · d deletes the selected one"
        )
        self.delete_button.setText("Restore unit  (d)" if current_deleted else "Delete unit  (d)")

    def set_ablation_mode(self, mode: AblationMode) -> None:
        index = self.mode_combo.findData(mode)
        if index >= 0 and index != self.mode_combo.currentIndex():
            self.mode_combo.setCurrentIndex(index)

    def ablation_mode(self) -> AblationMode:
        mode = self.mode_combo.currentData()
        assert isinstance(mode, AblationMode)
        return mode

    def deleted_rows(self) -> list[str]:
        return [item.text() for item in self._deleted_items()]

    def showing_deleted(self) -> bool:
        """Whether the list of deleted units (with its restore buttons) is shown."""
        return self.deleted_box.isVisible()

    def delete_button_text(self) -> str:
        return self.delete_button.text()

    def select_deleted_row(self, row: int) -> None:
        """Select one row of the deleted list, as a click would (Restore then restores it)."""
        item = self.deleted_list.item(row)
        if item is not None:
            item.setSelected(True)

    def _deleted_items(self) -> list[QListWidgetItem]:
        items = (self.deleted_list.item(i) for i in range(self.deleted_list.count()))
        return [item for item in items if item is not None]

    def _on_restore_clicked(self) -> None:
        chosen = [item.data(Qt.ItemDataRole.UserRole) for item in self.deleted_list.selectedItems()]
        items = self._deleted_items()
        if not chosen and len(items) == 1:
            chosen = [items[0].data(Qt.ItemDataRole.UserRole)]
        if chosen:
            self.restore_requested.emit(chosen)

    def _on_tab_index_changed(self, index: int) -> None:
        self.tab_changed.emit(self._tabs.tabText(index))

    def _on_mode_index_changed(self, index: int) -> None:
        self.ablation_mode_changed.emit(self.mode_combo.itemData(index))

    def _on_map_clicked(self, event: MouseClickEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._shape is None:
            return
        y, x = self.cell_at_scene(event.scenePos())
        if 0 <= y < self._shape[0] and 0 <= x < self._shape[1]:
            event.accept()
            self.position_clicked.emit(y, x)
