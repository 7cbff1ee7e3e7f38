"""A pane's job row: what the pane shows, the running job's progress and ×, and its button."""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from app.core.requests import JobEvent
from app.gui.preferred_view import cancel_button, compact_progress_bar


class JobRow(QWidget):
    """Info text (it wraps, never widens the window), then progress and cancel while the
    job runs, then the button that starts it (disabled meanwhile)."""

    run_requested = pyqtSignal()
    cancel_requested = pyqtSignal()

    def __init__(self, info: str, run: str, cancel_tip: str, progress_width: int,
                 progress_format: Callable[[JobEvent], str] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.info = QLabel(info)
        self.info.setObjectName("paneInfo")
        self.info.setWordWrap(True)
        self.info.setMinimumWidth(40)  # long layer names must not widen the window
        self.run_button = QPushButton(run)
        self.run_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.run_button.clicked.connect(self.run_requested)
        self.progress = compact_progress_bar()
        self.progress.setMaximumWidth(progress_width)
        self.cancel = cancel_button(cancel_tip)
        self.cancel.clicked.connect(self.cancel_requested)
        self._format = progress_format
        row.addWidget(self.info, 1)
        row.addWidget(self.progress)
        row.addWidget(self.cancel)
        row.addWidget(self.run_button)
        self.set_job(None)

    def set_job(self, progress: JobEvent | None) -> None:
        running = progress is not None
        self.progress.setVisible(running)
        self.cancel.setVisible(running)
        self.run_button.setEnabled(not running)
        if progress is not None:
            self.progress.setRange(0, max(progress.total, 1))
            self.progress.setValue(progress.done)
            self.progress.setToolTip(progress.text)
            if self._format is not None:
                self.progress.setFormat(self._format(progress))
