"""Status-bar progress for background jobs: one compact bar per running job, with a cancel ×."""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.core.messages import JobKind, JobProgress
from app.gui.preferred_view import cancel_button, compact_progress_bar

JOB_NAMES = {
    JobKind.SCAN: "scan",
    JobKind.RENDER: "render",
    JobKind.RENDER_LAYER: "render layer",
    JobKind.ABLATE: "ablation",
    JobKind.PREFERRED_GRID: "preferred images grid",
    JobKind.UNIT_CARD: "unit card",
    JobKind.DISSECT: "dissection",
    JobKind.CONCEPTS: "concept labels",
    JobKind.ICONS: "unit icons",
    JobKind.CLASS_UNITS: "class units",
    JobKind.INTEGRATED: "path-integrated attribution",
    JobKind.ACCENTUATE: "accentuation",
    JobKind.INVERT: "inversion",
    JobKind.ACTIVATION_GRID: "activation grid",
    JobKind.GROUP_ICONS: "group icons",
}


class JobWidget(QWidget):
    """"scan [████──] ×": name, progress (its text as tooltip), cancel."""

    cancel_requested = pyqtSignal(object)  # JobKind

    def __init__(self, kind: JobKind, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.setSpacing(4)
        self.label = QLabel(JOB_NAMES.get(kind, kind.value))
        self.bar = compact_progress_bar()
        self.bar.setFixedWidth(130)
        self.bar.setFormat("%p%")
        self.cancel = cancel_button(f"Cancel the {JOB_NAMES.get(kind, kind.value)}")
        self.cancel.clicked.connect(lambda: self.cancel_requested.emit(self.kind))
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)

    def set_progress(self, progress: JobProgress) -> None:
        if progress.total > 0:
            self.bar.setRange(0, progress.total)
            self.bar.setValue(min(progress.done, progress.total))
        else:
            self.bar.setRange(0, 0)  # unknown total: Qt's busy indicator
        self.setToolTip(progress.text)
        self.bar.setToolTip(progress.text)

    def progress(self) -> tuple[int, int]:
        """(done, total) as the bar shows them; total 0: unknown."""
        return self.bar.value(), self.bar.maximum()
