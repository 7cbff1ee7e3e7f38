"""Ablation curves (accuracy vs. fraction of units deleted) and the class-selectivity histogram.

Redrawn only when new curves arrive; a unit change just moves the histogram's marker.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from app.core.messages import AblationCurves, ClassUnitCurves
from app.core.requests import JobEvent
from app.gui import theme
from app.gui.image_pane import Panel
from app.gui.job_row import JobRow

ORDER_COLORS = {
    "random": "#8fa8c8",
    "selective first": theme.ACCENT,
    "selective last": "#5ec8a0",
}
_FALLBACK_COLORS = ("#c77dff", "#ff6b6b", "#6bc5ff")
HISTOGRAM_BINS = 30


def plot_widget(x_label: str, y_label: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=theme.BACKGROUND)
    plot.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(False, False)
    plot.hideButtons()
    plot.showGrid(x=True, y=True, alpha=0.15)
    item = plot.getPlotItem()
    assert item is not None
    for side in ("left", "bottom"):
        axis = item.getAxis(side)
        axis.setPen(pg.mkPen(theme.BORDER))
        axis.setTextPen(pg.mkPen(theme.TEXT_DIM))
        axis.enableAutoSIPrefix(False)  # "0.35", never "350 (x0.001)"
    plot.setLabel("bottom", x_label, color=theme.TEXT_DIM)
    plot.setLabel("left", y_label, color=theme.TEXT_DIM)
    return plot


def shifted_note(shifted: int, units: int) -> str:
    """What the selectivity histogram is, when it is not quite Morcos et al.'s index."""
    if shifted <= 0:
        return ""
    return (
        f"ⓘ About the selectivity: Morcos et al.'s index assumes activations ≥ 0; this layer "
        f"is signed, so for {shifted} of {units} units the class means were shifted by "
        "their smallest first. The histogram is right; it is just not their exact index."
    )


class AblationPane(Panel):
    """Header, run/cancel row, and the two plots (a placeholder until curves exist)."""

    run_requested = pyqtSignal()
    cancel_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Ablation", parent)
        self.jobs = JobRow("No ablation curves yet.", "Ablation curves on a folder…",
                           "Stop the ablation analysis", 260)
        self.jobs.progress.setFormat("%v / %m images")
        self.jobs.run_requested.connect(self.run_requested)
        self.jobs.cancel_requested.connect(self.cancel_requested)
        self.info, self.progress, self.cancel = self.jobs.info, self.jobs.progress, self.jobs.cancel
        self.run_button = self.jobs.run_button
        self.layout_.addWidget(self.jobs)
        self.note = QLabel("")
        self.note.setObjectName("paneInfo")
        self.note.setWordWrap(True)
        # information, not an error: the pane's own dim text, not the warning yellow
        self.note.hide()
        self.layout_.addWidget(self.note)

        self.stack = QStackedWidget()
        self.placeholder = QLabel(
            "Delete a layer's units in three orders — random, most class-selective first,\n"
            "least selective first — and see how accuracy falls (Morcos et al. 2018).\n\n"
            "Analysis → Ablation curves on a folder… runs it on a folder of images\n"
            "(ImageNet-style class subfolders give accuracy; any folder gives agreement)."
        )
        self.placeholder.setObjectName("placeholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        plots = QWidget()
        plots_layout = QVBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        self.curves_plot = plot_widget("units deleted (%)", "accuracy")
        self.curves_plot.setYRange(0.0, 1.0)
        self.legend = self.curves_plot.addLegend(offset=(-10, 10), labelTextColor=theme.TEXT)
        self.legend.setBrush(pg.mkBrush(theme.PANEL + "d0"))
        self.hist_plot = plot_widget("class selectivity index", "units")
        plots_layout.addWidget(self.curves_plot, 3)
        plots_layout.addWidget(self.hist_plot, 2)
        # the units one class needs (Bau et al. 2020): shown once such a run exists
        self.class_plot = plot_widget("units deleted / kept, most needed first", "accuracy")
        self.class_legend = self.class_plot.addLegend(offset=(-10, 10),
                                                      labelTextColor=theme.TEXT)
        self.class_legend.setBrush(pg.mkBrush(theme.PANEL + "d0"))
        self.class_plot.setLogMode(x=True, y=False)
        self.class_plot.hide()
        plots_layout.addWidget(self.class_plot, 3)
        self.class_curves: ClassUnitCurves | None = None
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(plots)
        self.layout_.addWidget(self.stack, 1)

        self.marker = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(theme.ERROR, width=2))
        self.marker_label = pg.TextItem("", color=theme.ERROR, anchor=(0, 0))
        self.hist_plot.addItem(self.marker, ignoreBounds=True)
        self.hist_plot.addItem(self.marker_label, ignoreBounds=True)
        self.curves: AblationCurves | None = None
        self.lines: dict[str, pg.PlotDataItem] = {}
        self.bands: dict[str, pg.FillBetweenItem] = {}
        self.histogram: pg.PlotDataItem | None = None
        self.set_job(None)
        self.set_unit(None, 0)

    def set_job(self, progress: JobEvent | None) -> None:
        self.jobs.set_job(progress)

    def set_curves(self, curves: AblationCurves) -> None:
        """Draw the curves (mean line and spread band per order) and the histogram."""
        self.curves = curves
        plot = self.curves_plot
        for item in [*self.lines.values(), *self.bands.values()]:
            plot.removeItem(item)
        self.legend.clear()
        self.lines.clear()
        self.bands.clear()
        x = 100.0 * np.asarray(curves.fractions, dtype=np.float64)
        for i, (name, (mean, spread)) in enumerate(curves.curves.items()):
            color = ORDER_COLORS.get(name, _FALLBACK_COLORS[i % len(_FALLBACK_COLORS)])
            mean = np.asarray(mean, dtype=np.float64)
            spread = np.asarray(spread, dtype=np.float64)
            if np.any(spread > 0):
                upper = pg.PlotCurveItem(x, mean + spread, pen=pg.mkPen(None))
                lower = pg.PlotCurveItem(x, mean - spread, pen=pg.mkPen(None))
                band = pg.FillBetweenItem(upper, lower, brush=pg.mkBrush(color + "40"))
                plot.addItem(band)
                self.bands[name] = band
            line = plot.plot(
                x, mean, pen=pg.mkPen(color, width=2), name=name,
                symbol="o", symbolSize=5, symbolBrush=color, symbolPen=None,
            )
            self.lines[name] = line
        plot.setLabel("left", curves.metric, color=theme.TEXT_DIM)
        plot.setXRange(0.0, 100.0, padding=0.02)
        plot.setYRange(0.0, 1.0, padding=0.02)

        sel = np.asarray(curves.selectivity, dtype=np.float64)
        finite = sel[np.isfinite(sel)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.05, hi + 0.05
        counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(lo, hi))
        if self.histogram is not None:
            self.hist_plot.removeItem(self.histogram)
        self.histogram = self.hist_plot.plot(
            edges, counts, stepMode="center", fillLevel=0,
            pen=pg.mkPen("#8fa8c8"), brush=pg.mkBrush("#4f7cac"),
        )
        self.hist_plot.setXRange(lo, hi, padding=0.03)
        self.hist_plot.setYRange(0, max(int(counts.max()), 1) * 1.15, padding=0)
        self.info.setText(
            f"{curves.layer} · {sel.size} units · {curves.images:,} images · {curves.metric}"
        )
        self.note.setText(shifted_note(curves.shifted_units, sel.size))
        self.note.setVisible(curves.shifted_units > 0)
        self.stack.setCurrentIndex(1)
        self._update_marker()

    def set_class_units(self, c: ClassUnitCurves) -> None:
        """Plot delete-top-n and keep-only-top-n for the class and for the other classes."""
        self.class_curves = c
        plot = self.class_plot
        plot.clear()
        self.class_legend.clear()
        n = np.maximum(np.asarray(c.counts, dtype=np.float64), 0.5)  # n = 0 on a log axis
        for values, name, color, dash in (
            (c.delete_class, f"delete top n: {c.class_name}", theme.ERROR, False),
            (c.delete_other, "delete top n: other classes", theme.ERROR, True),
            (c.keep_class, f"keep only top n: {c.class_name}", "#5ec8a0", False),
            (c.keep_other, "keep only top n: other classes", "#5ec8a0", True),
        ):
            pen = pg.mkPen(color, width=2,
                           style=Qt.PenStyle.DashLine if dash else Qt.PenStyle.SolidLine)
            plot.plot(n, np.asarray(values, dtype=np.float64), pen=pen, name=name,
                      symbol="o", symbolSize=4, symbolBrush=color, symbolPen=None)
        plot.setYRange(0.0, 1.0, padding=0.02)
        top = ", ".join(str(u) for u in c.ranking[:8])
        plot.setTitle(f"{c.layer}: units {c.class_name!r} needs most: {top}",
                      color=theme.TEXT_DIM, size="9pt")
        plot.show()
        self.stack.setCurrentIndex(1)

    def showing_class_units(self) -> bool:
        return self.class_plot.isVisible() and self.class_curves is not None

    def set_unit(self, layer: str | None, unit: int) -> None:
        """Mark `unit` on the histogram when the curves belong to its layer."""
        self._layer = layer
        self._unit = unit
        self._update_marker()

    def showing_curves(self) -> bool:
        """False while the how-to text stands in for the plots."""
        return self.stack.currentIndex() == 1

    def metric_label(self) -> str:
        """The curves' y axis label: the metric they plot."""
        item = self.curves_plot.getPlotItem()
        assert item is not None
        return str(item.getAxis("left").labelText)

    def note_text(self) -> str:
        """The caveat under the header ("" when there is none)."""
        return self.note.text() if not self.note.isHidden() else ""

    def marker_text(self) -> str:
        return str(self.marker_label.toPlainText())

    def marker_value(self) -> float | None:
        """The selected unit's selectivity as marked, or None when not marked."""
        return float(self.marker.value()) if self.marker.isVisible() else None

    def _update_marker(self) -> None:
        c = self.curves
        if c is None or c.layer != self._layer or not 0 <= self._unit < len(c.selectivity):
            self.marker.hide()
            self.marker_label.hide()
            return
        value = float(c.selectivity[self._unit])
        self.marker.setValue(value)
        self.marker.show()
        self.marker_label.setText(f"unit {self._unit}: {value:.3f}")
        y_top = self.hist_plot.getViewBox().viewRange()[1][1]
        self.marker_label.setPos(value, y_top)
        self.marker_label.show()
