"""The selected unit, enlarged: its map colormapped with nearest-neighbour pixels."""

from __future__ import annotations

import numpy as np
from PyQt6.QtWidgets import QLabel, QWidget

from app.gui.image_pane import ImageView, Panel, make_image_item


class UnitPane(Panel):
    """Title "layer · unit N", the map, and its raw values."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Selected unit", parent)
        self.pane = ImageView("Loading model…")
        self.image = make_image_item()  # QPainter scales it without smoothing: crisp pixels
        self.pane.view.addItem(self.image)
        self.values = QLabel(" ")
        self.values.setObjectName("paneInfo")
        self.values.setWordWrap(True)
        self.layout_.addWidget(self.pane, 1)
        self.layout_.addWidget(self.values)
        self._shape: tuple[int, ...] | None = None

    def set_lut(self, lut: np.ndarray) -> None:
        self.image.setLookupTable(lut)

    def set_title(self, layer: str, unit: int) -> None:
        self.title.setText(f"{layer} · unit {unit}")
        self.title.setToolTip(self.title.text())

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
