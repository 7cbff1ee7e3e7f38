"""Status-bar progress for background jobs: one compact bar per running job, with a cancel ×."""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.core.requests import JobEvent
from app.gui.preferred_view import cancel_button, compact_progress_bar


class JobWidget(QWidget):
    """"scan [████──] ×": name, progress (its text as tooltip), cancel."""

    cancel_requested = pyqtSignal(str)  # the job's kind

    def __init__(self, kind: str, label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.setSpacing(4)
        self.label = QLabel(label)
        self.bar = compact_progress_bar()
        self.bar.setFixedWidth(130)
        self.bar.setFormat("%p%")
        self.cancel = cancel_button(f"Cancel the {label}")
        self.cancel.clicked.connect(lambda: self.cancel_requested.emit(self.kind))
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)

    def set_progress(self, progress: JobEvent) -> None:
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
