"""The selected unit's preferred image (gradient ascent): previews, progress, layer renders."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import PreferredImage
from app.core.requests import JobEvent
from app.gui.image_pane import ImageView, make_image_item


def compact_progress_bar() -> QProgressBar:
    bar = QProgressBar()
    bar.setTextVisible(True)
    bar.setFixedHeight(16)
    bar.setFormat("%v / %m")
    return bar


def cancel_button(tooltip: str) -> QToolButton:
    button = QToolButton()
    button.setText("×")
    button.setToolTip(tooltip)
    button.setAutoRaise(True)
    button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return button


def activation_text(event: PreferredImage) -> str:
    """"activation 12.30 (best in dataset 9.80)", the two numbers the user compares."""
    text = f"activation {event.activation:.2f}"
    if event.best_dataset_activation is not None:
        text += f" (best in dataset {event.best_dataset_activation:.2f})"
    return text


class PreferredPane(QWidget):
    """Image (nearest-neighbour: the pixels the optimizer made), numbers, two progress rows."""

    cancel_render = pyqtSignal()
    render_layer_requested = pyqtSignal()
    cancel_render_layer = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.pane = ImageView("Select a unit: its preferred image renders here.")
        self.image = make_image_item()  # QPainter scales it without smoothing
        self.pane.view.addItem(self.image)
        layout.addWidget(self.pane, 1)
        self.values = QLabel(" ")
        self.values.setObjectName("paneInfo")
        self.values.setWordWrap(True)
        layout.addWidget(self.values)

        row = QHBoxLayout()
        self.progress = compact_progress_bar()
        self.progress.setFormat("step %v / %m")
        self.cancel = cancel_button("Stop rendering this unit")
        self.cancel.clicked.connect(self.cancel_render)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel)
        layout.addLayout(row)

        layer_row = QHBoxLayout()
        self.render_layer_button = QPushButton("Render whole layer")
        self.render_layer_button.setToolTip(
            "Render and cache the preferred image of every unit of this layer in the background"
        )
        self.render_layer_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.render_layer_button.clicked.connect(self.render_layer_requested)
        self.layer_progress = compact_progress_bar()
        self.layer_progress.setFormat("%v / %m units")
        self.layer_cancel = cancel_button("Stop rendering the layer")
        self.layer_cancel.clicked.connect(self.cancel_render_layer)
        layer_row.addWidget(self.render_layer_button)
        layer_row.addWidget(self.layer_progress, 1)
        layer_row.addWidget(self.layer_cancel)
        layout.addLayout(layer_row)
        self.set_render_running(False)
        self.set_layer_job(None)
        self._shape: tuple[int, ...] | None = None
        self.current: PreferredImage | None = None

    def set_waiting(self, layer: str, unit: int) -> None:
        """A new unit was selected; its image (cached or a first preview) is on its way."""
        self.current = None
        self.pane.set_placeholder(f"Rendering {layer} · unit {unit}…")
        self.pane.show_graphics(False)
        self.values.setText(" ")
        self.set_render_running(False)

    def set_render_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel.setVisible(running)

    def show_image(self, event: PreferredImage) -> None:
        """A preview (progress moves) or the final image (progress hides)."""
        self.current = event
        image = np.ascontiguousarray(event.image)
        self.image.setImage(image, autoLevels=False, levels=(0, 255))
        if not self.pane.showing_graphics:
            self.pane.show_graphics()
        if image.shape != self._shape:
            self._shape = image.shape
            self.pane.view.autoRange(padding=0.02)
        text = activation_text(event)
        if event.done:
            self.set_render_running(False)
        else:
            self.progress.setRange(0, max(event.total, 1))
            self.progress.setValue(event.step)
            self.set_render_running(True)
        self.values.setText(text)

    def shown_image(self) -> np.ndarray | None:
        image: np.ndarray | None = self.image.image
        return image

    def values_text(self) -> str:
        return self.values.text()

    def render_progress(self) -> tuple[int, int] | None:
        """(step, total) of the unit's render while its progress row shows; else None."""
        if not self.progress.isVisible():
            return None
        return self.progress.value(), self.progress.maximum()

    def layer_job_progress(self) -> tuple[int, int] | None:
        """(done, total) of "render whole layer" while it runs; else None."""
        if not self.layer_progress.isVisible():
            return None
        return self.layer_progress.value(), self.layer_progress.maximum()

    def set_layer_job(self, progress: JobEvent | None) -> None:
        """Progress of "render whole layer"; None: not running."""
        running = progress is not None
        self.layer_progress.setVisible(running)
        self.layer_cancel.setVisible(running)
        self.render_layer_button.setEnabled(not running)
        if progress is not None:
            self.layer_progress.setRange(0, max(progress.total, 1))
            self.layer_progress.setValue(progress.done)
            self.layer_progress.setToolTip(progress.text)
