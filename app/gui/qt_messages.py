"""Qt's own messages (qWarning and friends) into Python logging, so they reach the log
file with everything else instead of the terminal; fatal ones still reach stderr."""

from __future__ import annotations

import logging
import sys

from PyQt6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler

log = logging.getLogger("qt")
_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def _handle(kind: QtMsgType, _context: QMessageLogContext, message: str | None) -> None:
    level = _LEVELS.get(kind, logging.WARNING)
    log.log(level, "%s", message)
    if level >= logging.CRITICAL:
        print(f"deepvis: Qt: {message}", file=sys.stderr)


def route_qt_messages() -> None:
    """Install the handler (process-wide; installing it again changes nothing)."""
    qInstallMessageHandler(_handle)
