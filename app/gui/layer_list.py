"""The layers of the loaded model as a list; choosing a row chooses the layer."""

from __future__ import annotations

from PyQt6.QtCore import QPoint, Qt, pyqtSignal
from PyQt6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from app.core.messages import LayerInfo
from app.gui.image_pane import Panel

LAYOUT_MARKS = {"tokens": "  tokens", "cls": "  class token", "nhwc": "  nhwc"}
KIND_MARKS = {"concepts": "  concepts"}  # a learned dictionary's layer, after its source


def layer_row_text(info: LayerInfo) -> str:
    """`_blocks.5._depthwise_conv  240×28×28`: the list row for a layer; a transformer's
    token layer says so (`encoder.layers.encoder_layer_5  768×14×14  tokens`)."""
    return (f"{info.name}  {'×'.join(str(s) for s in info.shape)}"
            + KIND_MARKS.get(info.kind, LAYOUT_MARKS.get(info.layout, "")))


class LayerListPane(Panel):
    """"Layers": one row per recordable layer; "Loading model…" until a model is ready."""

    layer_chosen = pyqtSignal(str)  # the user moved to another row: that layer's name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Layers", parent)
        self._list = QListWidget()
        self._list.setUniformItemSizes(True)
        self._list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # a long name loses its start: the end holds what tells rows apart (a transformer's
        # block number and sub-layer, "…encoder_layer_11.mlp.3  768×14×14"), which an
        # elision in the middle would hide
        self._list.setTextElideMode(Qt.TextElideMode.ElideLeft)
        self._list.currentRowChanged.connect(self._on_row_changed)
        placeholder = QListWidgetItem("Loading model…")
        placeholder.setFlags(Qt.ItemFlag.NoItemFlags)
        self._list.addItem(placeholder)
        self.layout_.addWidget(self._list)
        self._names: list[str] = []

    def set_layers(self, layers: tuple[LayerInfo, ...]) -> None:
        """Replace the rows (no row chosen; `layer_chosen` is not emitted)."""
        self._list.blockSignals(True)
        self._list.clear()
        for info in layers:
            item = QListWidgetItem(layer_row_text(info))
            item.setToolTip(info.describe())
            self._list.addItem(item)
        self._list.blockSignals(False)
        self._names = [info.name for info in layers]

    def set_current(self, name: str | None) -> None:
        """Show `name` as the current row, scrolled into view, without emitting `layer_chosen`."""
        if name not in self._names:
            return
        row = self._names.index(name)
        if row != self._list.currentRow():
            self._list.blockSignals(True)
            self._list.setCurrentRow(row)
            self._list.blockSignals(False)
        self._list.scrollToItem(self._list.currentItem())

    def rows(self) -> list[str]:
        items = (self._list.item(i) for i in range(self._list.count()))
        return [item.text() for item in items if item is not None]

    def current_row(self) -> int:
        return self._list.currentRow()

    def key_target(self) -> QWidget:
        """The widget that has the focus after a click on a row (keys typed there)."""
        return self._list

    def mouse_area(self) -> QWidget:
        viewport = self._list.viewport()
        assert viewport is not None  # a QListWidget always has one
        return viewport

    def reveal_row(self, row: int) -> QPoint:
        """Scroll `row` into view; → its centre, in `mouse_area()` coordinates."""
        item = self._list.item(row)
        assert item is not None, row
        self._list.scrollToItem(item)
        return self._list.visualItemRect(item).center()

    def _on_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._names):
            self.layer_chosen.emit(self._names[row])

    def shown_text(self, row: int) -> str:
        """Row `row` as the list draws it: elided to the list's width the way it elides."""
        item = self._list.item(row)
        if item is None:
            return ""
        viewport = self._list.viewport()
        width = viewport.width() if viewport is not None else self._list.width()
        room = width - 2 * self._list.spacing() - 8  # the item's own margins
        return self._list.fontMetrics().elidedText(item.text(), self._list.textElideMode(),
                                                   room)
