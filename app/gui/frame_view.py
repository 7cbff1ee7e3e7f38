"""This frame, as pictures: what a unit responds to in it, and what layers keep of it.

Feature accentuation (Hamblin et al. 2024) starts from the frozen frame and raises the
selected unit while staying close to it: the answer to "what in this frame does the unit
respond to" is then a picture beside the frame. The activation grid (Olah et al. 2018)
shows, at every position, the preferred image of the layer's whole activation vector
there. Feature inversion (Mahendran & Vedaldi 2015) rebuilds the frame from a few layers'
codes, side by side: what each layer kept of what it saw. All run as jobs with live
previews, and freeze the frame first.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from app.core.messages import FrameImage
from app.gui.image_pane import Panel
from app.gui.patches_view import PictureTile

INVERTED_LAYERS = 3  # reconstructions shown side by side


def seen_crop(image: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    """The region of a frame the model saw (a result's `crop`, (x, y, w, h), clipped)."""
    x, y, w, h = crop
    return np.ascontiguousarray(image[max(y, 0) : y + h, max(x, 0) : x + w])


def frame_name(source: str, index: int) -> str:
    """Which frame it is: "cat.jpg · frame 0"."""
    return f"{source} · frame {index}"


class FramePane(Panel):
    """The frame as the model saw it, its accentuation, and a row of inversions."""

    accentuate_requested = pyqtSignal()
    invert_requested = pyqtSignal()
    grid_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("This frame", parent)
        row = QHBoxLayout()
        self.accentuate_button = QPushButton("Accentuate  (x)")
        self.accentuate_button.setToolTip(
            "Raise the selected unit in this frame while staying close to it (Hamblin et al. "
            "2024): what here the unit responds to. Freezes the frame.")
        self.invert_button = QPushButton("Invert  (v)")
        self.invert_button.setToolTip(
            "Rebuild the frame from each layer's code alone (Mahendran & Vedaldi 2015): what "
            "the layer kept of it. Freezes the frame.")
        self.grid_button = QPushButton("Activation grid  (m)")
        self.grid_button.setToolTip(
            "At every position of the layer, the preferred image of its whole activation "
            "vector, laid out on the frame (Building Blocks' activation grid). Freezes the frame.")
        for button in (self.accentuate_button, self.invert_button, self.grid_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            row.addWidget(button)
        row.addStretch(1)
        self.accentuate_button.clicked.connect(self.accentuate_requested)
        self.invert_button.clicked.connect(self.invert_requested)
        self.grid_button.clicked.connect(self.grid_requested)
        self.layout_.addLayout(row)
        grid = QGridLayout()
        grid.setSpacing(6)
        # two caption lines: "activation 1.52 → 22.61, 25.8 dB from the frame" at 1366 px
        self.seed_tile = PictureTile(caption_lines=2)
        self.accentuated_tile = PictureTile(caption_lines=2)
        self.accentuated_title = QLabel("Accentuated: press x on a frame")
        self.accentuated_title.setObjectName("paneInfo")
        self.accentuated_title.setWordWrap(True)
        seed_title = QLabel("The frame as the model saw it")
        seed_title.setObjectName("paneInfo")
        self.grid_tile = PictureTile(caption_lines=2)
        self.grid_title = QLabel("Activation grid: press m")
        self.grid_title.setObjectName("paneInfo")
        self.grid_title.setWordWrap(True)
        grid.addWidget(seed_title, 0, 0)
        grid.addWidget(self.accentuated_title, 0, 1)
        grid.addWidget(self.grid_title, 0, 2)
        grid.addWidget(self.seed_tile, 1, 0)
        grid.addWidget(self.accentuated_tile, 1, 1)
        grid.addWidget(self.grid_tile, 1, 2)
        self.inverted_title = QLabel("Inverted: press v on a frame")
        self.inverted_title.setObjectName("paneInfo")
        grid.addWidget(self.inverted_title, 2, 0, 1, 3)
        self.inverted_tiles = [PictureTile(caption_lines=2) for _ in range(INVERTED_LAYERS)]
        for i, tile in enumerate(self.inverted_tiles):
            grid.addWidget(tile, 3, i)
        for r in (1, 3):
            grid.setRowStretch(r, 1)
        for tile in (self.seed_tile, self.accentuated_tile, self.grid_tile,
                     *self.inverted_tiles):
            tile.setMinimumSize(60, 76)
        self.layout_.addLayout(grid, 1)
        self._inverted: list[str] = []

    def set_inverted_layers(self, layers: tuple[str, ...]) -> None:
        """A new inversion of these layers starts: clear the row."""
        self._inverted = list(layers)
        for tile in self.inverted_tiles:
            tile.set_picture(None)
        self.inverted_title.setText("Inverting " + ", ".join(layers) + " …")

    def show_seed(self, image: np.ndarray) -> None:
        """The frame as the model saw it (the crop of the newest result), before any job."""
        self.seed_tile.set_picture(image, "")

    def on_frame_image(self, event: FrameImage) -> None:
        if event.seed is not None:
            self.seed_tile.set_picture(event.seed, "")
        if event.kind == "activation_grid":
            self.grid_tile.set_picture(event.image, event.caption)
            self.grid_title.setText(f"Activation grid: {event.layer}"
                                    + ("" if event.done else " …"))
            return
        if event.kind == "accentuate":
            self.accentuated_tile.set_picture(event.image, event.caption)
            self.accentuated_title.setText(
                f"Accentuated: {event.layer} unit {event.unit}" + ("" if event.done else " …"))
            return
        if event.layer in self._inverted:
            i = self._inverted.index(event.layer)
            if i < len(self.inverted_tiles):
                self.inverted_tiles[i].set_picture(event.image, f"{event.layer}: {event.caption}")
        if event.done and self._inverted and event.layer == self._inverted[-1]:
            self.inverted_title.setText("Inverted: what each layer keeps of the frame")

    def captions_fit(self) -> dict[str, bool]:
        """Whether each caption (as `captions` names them) is drawn whole."""
        tiles = {"accentuated": self.accentuated_tile, "activation grid": self.grid_tile,
                 **{f"inverted {i}": t for i, t in enumerate(self.inverted_tiles)}}
        return {name: tile.caption_fits() for name, tile in tiles.items()}

    def captions(self) -> dict[str, str]:
        """What the tiles say (tests read it)."""
        return {"accentuated": self.accentuated_tile.caption(),
                "activation grid": self.grid_tile.caption(),
                **{f"inverted {i}": t.caption() for i, t in enumerate(self.inverted_tiles)}}
