"""The message log: model, source and error messages, newest last, 200 kept."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QPlainTextEdit, QWidget

from app.gui.image_pane import Panel

MAX_LINES = 200


class MessagesPane(Panel):
    """"Messages": a read-only log the status bar's notices also go to."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Messages", parent)
        self._log = QPlainTextEdit()
        self._log.setReadOnly(True)
        self._log.setMaximumBlockCount(MAX_LINES)
        self._log.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._log.setAcceptDrops(False)  # a dropped file opens as a source, not as text
        self._log.setPlaceholderText("Model, source and error messages appear here.")
        self.layout_.addWidget(self._log)

    def append(self, line: str) -> None:
        """Add a line and bring it into view (the newest message is the one that matters)."""
        self._log.appendPlainText(line)
        bar = self._log.verticalScrollBar()
        if bar is not None:
            bar.setValue(bar.maximum())

    def mouse_area(self) -> QWidget:
        """The log widget itself, which takes the wheel and scrolling keys."""
        return self._log

    def showing_newest(self) -> bool:
        """Whether the log is scrolled to its last line."""
        bar = self._log.verticalScrollBar()
        return bar is None or bar.value() == bar.maximum()

    def text(self) -> str:
        return self._log.toPlainText()
