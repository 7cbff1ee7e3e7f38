"""Qt's own messages (qWarning and friends) into Python logging, so they reach the log
file with everything else instead of the terminal; fatal ones still reach stderr.

A fatal message alone rarely says why: when Qt cannot load a platform plugin it aborts with
"Reinstalling the application may fix this problem", and the line that names the missing
library came just before it, as a warning of the `qt.qpa` categories. Those few warnings are
kept and printed with the fatal one (the live command checks the X11 libraries itself before
the window is made, `app.core.x11_libraries`; this covers whatever it does not know).
"""

from __future__ import annotations

import logging
import sys
from collections import deque

from PyQt6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler

log = logging.getLogger("qt")
_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}
# the platform plugin's last words before a fatal message, to print with it
_platform_warnings: deque[str] = deque(maxlen=4)


def _handle(kind: QtMsgType, context: QMessageLogContext, message: str | None) -> None:
    level = _LEVELS.get(kind, logging.WARNING)
    log.log(level, "%s", message)
    if level >= logging.CRITICAL:
        for earlier in _platform_warnings:
            print(f"deepvis: Qt: {earlier}", file=sys.stderr)
        _platform_warnings.clear()
        print(f"deepvis: Qt: {message}", file=sys.stderr)
    elif level >= logging.WARNING and (context.category or "").startswith("qt.qpa"):
        _platform_warnings.append(message or "")


def route_qt_messages() -> None:
    """Install the handler (process-wide; installing it again changes nothing)."""
    qInstallMessageHandler(_handle)
