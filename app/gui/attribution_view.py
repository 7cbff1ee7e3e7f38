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
OFF_TEXT = "Attribution is off · press b to cycle gradient → deconvnet → guided backprop"


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
        self.pane = ImageView(OFF_TEXT)
        self.image = make_image_item()
        self.image.setLookupTable(lookup_table(ATTRIBUTION_COLORMAP))
        self.pane.view.addItem(self.image)
        self._info = QLabel(" ")
        self._info.setObjectName("paneInfo")
        self._info.setWordWrap(True)
        layout.addWidget(self.pane, 1)
        layout.addWidget(self._info)
        self._shape: tuple[int, ...] | None = None

    def set_map(self, saliency: np.ndarray, blank_reason: str | None = None) -> None:
        """Show an (h, w) uint8 saliency map; with `blank_reason` (the map is all zero),
        say why instead of showing a black square."""
        self.image.setImage(saliency, autoLevels=False, levels=(0, 255))
        if blank_reason is not None:
            self.pane.set_placeholder(blank_reason)
            self.pane.show_graphics(False)
            return
        if not self.pane.showing_graphics:
            self.pane.show_graphics()
        if saliency.shape != self._shape:
            self._shape = saliency.shape
            self.pane.view.autoRange(padding=0.02)

    def set_off(self) -> None:
        self.pane.set_placeholder(OFF_TEXT)
        self.pane.show_graphics(False)
        self._info.setText(" ")

    def set_computing(self, mode: AttributionMode) -> None:
        """Attribution was just turned on: say so until the first map arrives."""
        self.pane.set_placeholder(f"Computing {MODE_TEXT[mode]}…")

    def show_status(
        self, status: str, layer: str, unit: int, at: tuple[int, int] | None
    ) -> None:
        """What the map shows: `status` (mode and cost), the unit, the position attributed."""
        where = "max" if at is None else f"({at[0]}, {at[1]})"
        self._info.setText(
            f"{status} · {layer} · unit {unit} at {where} · click the unit map to pick a position"
        )

    def info_text(self) -> str:
        return self._info.text()

    def placeholder_text(self) -> str:
        """What the pane says instead of a map; "" while it shows one."""
        return "" if self.pane.showing_graphics else self.pane.placeholder_text()

    def shown_map(self) -> np.ndarray | None:
        image: np.ndarray | None = self.image.image
        return image
