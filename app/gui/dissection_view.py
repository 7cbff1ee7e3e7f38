"""A layer's dissection: what its units detect (Bau et al. 2017), as a summary and a list.

Top: the table NetDissect papers report, as bars per concept category — units that detect
a concept of it, and how many distinct concepts they cover. Beside it: every interpretable
unit with its label and IoU, best first; a click selects the unit (the unit card then
shows its label and its live mask). Below: the selected unit's strip, NetDissect's own
picture of a unit: its top images in the dataset with where it fires outlined. A
run/cancel row starts a dissection of the shown layer on a folder.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QImage, QPixmap
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import ConceptUnit, LayerConcepts
from app.core.requests import JobEvent
from app.gui import theme
from app.gui.ablation_view import plot_widget
from app.gui.image_files import ImageCanvas, ImageFiles
from app.gui.image_pane import Panel
from app.gui.job_row import JobRow

UNIQUE_COLOR = "#5ec8a0"
STRIP_HEIGHT = (112, 160)  # px: the strip row's least and most height (tiles are 112 px)


class DissectionPane(Panel):
    """Header, run/cancel row, the per-category bars and the list of labelled units."""

    run_requested = pyqtSignal()
    cancel_requested = pyqtSignal()
    unit_clicked = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Dissection", parent)
        self.jobs = JobRow("No dissection yet.", "Dissect a folder…",
                           "Stop the dissection (it resumes where it stopped)", 220,
                           lambda p: p.text.split("  ")[0] + "  %p%")
        self.jobs.run_requested.connect(self.run_requested)
        self.jobs.cancel_requested.connect(self.cancel_requested)
        self.info, self.progress, self.cancel = self.jobs.info, self.jobs.progress, self.jobs.cancel
        self.run_button = self.jobs.run_button
        self.layout_.addWidget(self.jobs)

        self.stack = QStackedWidget()
        self.placeholder = QLabel("")
        self.placeholder.setObjectName("placeholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        body = QWidget()
        body_column = QVBoxLayout(body)
        body_column.setContentsMargins(0, 0, 0, 0)
        body_layout = QHBoxLayout()
        body_column.addLayout(body_layout, 1)
        self.strip_caption = QLabel("Click a unit to see its top images.")
        self.strip_caption.setWordWrap(True)
        self.strip_canvas = ImageCanvas()
        self.strip_canvas.setMinimumSize(240, STRIP_HEIGHT[0])
        self.strip_canvas.setMaximumHeight(STRIP_HEIGHT[1])
        body_column.addWidget(self.strip_caption)
        body_column.addWidget(self.strip_canvas)
        self.strip_image: QImage | None = None  # the shown unit's strip, as decoded
        self._strip_unit: int | None = None
        self._files = ImageFiles(self)
        self._files.loaded.connect(self._on_strip_loaded)
        self.bars = plot_widget("concept category", "units / concepts")
        self.legend = self.bars.addLegend(offset=(-10, 10), labelTextColor=theme.TEXT)
        self.units_list = QListWidget()
        self.units_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.units_list.itemClicked.connect(self._on_item_clicked)
        body_layout.addWidget(self.bars, 1)
        body_layout.addWidget(self.units_list, 1)
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(body)
        self.layout_.addWidget(self.stack, 1)
        self.concepts: LayerConcepts | None = None
        self._bar_items: list[pg.BarGraphItem] = []
        self.set_job(None)

    def set_job(self, progress: JobEvent | None) -> None:
        self.jobs.set_job(progress)

    def set_concepts(self, concepts: LayerConcepts) -> None:
        """Show a layer's dissection (or, with no units, the note on how to make one)."""
        self.concepts = concepts
        self.set_title(f"Dissection · {concepts.layer}")
        if not concepts.units:
            self.placeholder.setText(concepts.note)
            self.info.setText(f"No dissection of {concepts.layer} yet.")
            self.stack.setCurrentIndex(0)
            return
        self.info.setText(
            f"{concepts.interpretable} of {len(concepts.units)} units detect a concept · "
            f"{concepts.unique} distinct concepts · on {concepts.dataset}")
        for item in self._bar_items:
            self.bars.removeItem(item)
        self.legend.clear()
        names = [c for c, _, _ in concepts.by_category]
        x = np.arange(len(names), dtype=np.float64)
        detectors = np.array([n for _, n, _ in concepts.by_category], np.float64)
        unique = np.array([n for _, _, n in concepts.by_category], np.float64)
        self._bar_items = [
            pg.BarGraphItem(x=x - 0.2, height=detectors, width=0.38,
                            brush=theme.ACCENT, name="units (detectors)"),
            pg.BarGraphItem(x=x + 0.2, height=unique, width=0.38, brush=UNIQUE_COLOR,
                            name="distinct concepts"),
        ]
        for item in self._bar_items:
            self.bars.addItem(item)  # a named item enters the legend by itself
        item = self.bars.getPlotItem()
        assert item is not None
        item.getAxis("bottom").setTicks([list(zip(x.tolist(), names, strict=True))])
        self.bars.setXRange(-0.6, max(len(names) - 0.4, 0.6), padding=0)
        self.bars.setYRange(0, max(float(detectors.max(initial=0)), 1.0) * 1.2, padding=0)
        self.units_list.clear()
        for u in sorted((u for u in concepts.units if u.interpretable), key=lambda u: -u.iou):
            row = QListWidgetItem(f"unit {u.unit} · {u.label} ({u.category}) · IoU {u.iou:.3f}")
            row.setToolTip(row.text())
            row.setData(Qt.ItemDataRole.UserRole, u.unit)
            self.units_list.addItem(row)
        self.stack.setCurrentIndex(1)

    def show_unit(self, unit: int) -> None:
        """Unit `unit`'s strip under the list (decoded off the GUI thread), or why none."""
        found = self._concept_unit(unit)
        self._strip_unit = unit
        self.strip_image = None
        self.strip_canvas.pixmap = None
        self.strip_canvas.update()
        if found is None:
            self._files.forget()  # a strip still decoding is for another unit now
            self.strip_caption.setText(f"Unit {unit} is not in this dissection.")
            return
        if not found.strip:
            self._files.forget()
            self.strip_caption.setText(f"{_unit_text(found)} · no top images saved")
            return
        self.strip_caption.setText(f"{_unit_text(found)} · loading its top images…")
        self._files.load(found.strip)

    def strip_text(self) -> str:
        return self.strip_caption.text()

    def wait_idle(self, msecs: int = 5000) -> bool:
        """Wait for a strip being decoded (shutdown and tests)."""
        return self._files.wait_idle(msecs)

    def _concept_unit(self, unit: int) -> ConceptUnit | None:
        units = self.concepts.units if self.concepts is not None else ()
        return next((u for u in units if u.unit == unit), None)

    def _on_strip_loaded(self, request: int, image: QImage) -> None:
        found = self._concept_unit(self._strip_unit if self._strip_unit is not None else -1)
        if request != self._files.request or found is None:
            return  # for a unit (or layer) left since
        if image.isNull():
            self.strip_caption.setText(f"{_unit_text(found)} · its top images could not be "
                                       f"read ({found.strip})")
            return
        self.strip_image = image
        self.strip_canvas.pixmap = QPixmap.fromImage(image)
        self.strip_canvas.update()
        self.strip_caption.setText(f"{_unit_text(found)} · its top images, where it fires "
                                   "outlined (the rest dimmed)")
        self.strip_caption.setToolTip(found.strip)

    def showing_summary(self) -> bool:
        return self.stack.currentIndex() == 1

    def unit_rows(self) -> list[str]:
        return [row.text() for i in range(self.units_list.count())
                if (row := self.units_list.item(i)) is not None]

    def click_row(self, row: int) -> None:
        """Select a listed unit, as a click on its row does (tests use it)."""
        item = self.units_list.item(row)
        if item is not None:
            self._on_item_clicked(item)

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.unit_clicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))


def _unit_text(u: ConceptUnit) -> str:
    """"Unit 12 · red (color), IoU 0.120" (a unit under the minimum IoU says so)."""
    below = "" if u.interpretable else ", under the minimum"
    return f"Unit {u.unit} · {u.label} ({u.category}), IoU {u.iou:.3f}{below}"
