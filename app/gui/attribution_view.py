"""The selected unit's attribution to the input pixels as a pane (also drawn on the input)."""

from __future__ import annotations

import numpy as np
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.core.messages import AttributionMode
from app.gui.colormaps import lookup_table
from app.gui.image_pane import ImageView, make_image_item

ATTRIBUTION_COLORMAP = "inferno"  # dark where nothing flows back, hot where pixels matter
MODE_TEXT = {
    AttributionMode.OFF: "off",
    AttributionMode.GRADIENT: "gradient",
    AttributionMode.DECONVNET: "deconvnet",
    AttributionMode.GUIDED: "guided backprop",
}


def attribution_status(mode: AttributionMode, ms: float) -> str:
    """"guided backprop 18 ms/frame": the status-bar text while attribution is on."""
    return f"{MODE_TEXT.get(mode, mode.value)} {ms:.0f} ms/frame"


class AttributionPane(QWidget):
    """The saliency map over the crop the model saw, with what it is and where it points."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.pane = ImageView("Attribution is off · press b to cycle gradient → deconvnet → "
                              "guided backprop")
        self.image = make_image_item()
        self.image.setLookupTable(lookup_table(ATTRIBUTION_COLORMAP))
        self.pane.view.addItem(self.image)
        self.info = QLabel(" ")
        self.info.setObjectName("paneInfo")
        self.info.setWordWrap(True)
        layout.addWidget(self.pane, 1)
        layout.addWidget(self.info)
        self._shape: tuple[int, ...] | None = None

    def set_map(self, saliency: np.ndarray) -> None:
        """Show an (h, w) uint8 saliency map."""
        self.image.setImage(saliency, autoLevels=False, levels=(0, 255))
        if not self.pane.showing_graphics:
            self.pane.show_graphics()
        if saliency.shape != self._shape:
            self._shape = saliency.shape
            self.pane.view.autoRange(padding=0.02)

    def set_off(self, text: str) -> None:
        self.pane.set_placeholder(text)
        self.pane.show_graphics(False)
        self.info.setText(" ")
