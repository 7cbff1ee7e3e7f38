"""Entry point for the window: build it around a backend, run Qt's loop, optionally grab it."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from PyQt6.QtCore import QEventLoop, QTimer
from PyQt6.QtWidgets import QApplication

from app.core.backend import LiveBackend
from app.core.settings import Settings
from app.gui.gui_thread_gc import collect_garbage_on_gui_thread
from app.gui.main_window import MainWindow
from app.gui.qt_messages import route_qt_messages
from app.gui.theme import apply_dark_theme

SCREENSHOT_TIMEOUT_S = 120.0
# a still source (image, folder) gives a result per request, not per frame: once none has
# come for this long, what is on screen is all it will give
STILL_SETTLE_MS = 1000


def run_window(
    backend: LiveBackend,
    settings: Settings,
    screenshot: str | None = None,
    frames: int = 0,
    initial_source: str | None = None,
    initial_model: str | None = None,
    initial_layer: str | None = None,
    initial_unit: int | None = None,
    screenshot_timeout_s: float = SCREENSHOT_TIMEOUT_S,
) -> int:
    """Show the window until it is closed and return the exit code.

    With `screenshot`, grab the window to that PNG once `frames` results have been shown
    (a still image or folder: once its results stop coming, which may be fewer; or after
    `screenshot_timeout_s`, whatever is on screen then) and quit: 0 when it was saved, 1
    when it could not be, 2 (the reason on stderr, no file) when the source or the model
    failed before any frame showed, so none will. `backend.stop()` is called exactly once
    on the way out.
    """
    app = QApplication.instance()
    owns_app = app is None
    if app is None:
        route_qt_messages()  # Qt's chatter to the log from the first message on
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    apply_dark_theme(app)
    window = MainWindow(backend, settings, initial_layer=initial_layer, initial_unit=initial_unit)
    if initial_model:
        backend.load_model(initial_model)
    if initial_source:
        backend.open_source(initial_source)

    outcome = {"code": 0, "saved": False}
    # Inside an application that is already running (embedding, tests) the window gets an
    # event loop of its own: app.exit() would set Qt's per-thread quit flag, and every
    # QEventLoop started afterwards in this process would return at once. That loop ends
    # when the window closes (app.exec() would wait for the host's last window).
    loop = None if owns_app else QEventLoop()
    if loop is not None:
        window.closed.connect(lambda: loop.exit(int(outcome["code"])))

    def finish(code: int) -> None:
        if loop is not None:
            loop.exit(code)
        else:
            app.exit(code)

    def save_and_quit() -> None:
        if outcome["saved"]:
            return
        outcome["saved"] = True
        try:
            window.save_screenshot(screenshot or "")
        except OSError as exc:
            print(f"deepvis: {exc}", file=sys.stderr)
            outcome["code"] = 1
        window.close()
        finish(int(outcome["code"]))

    settle = QTimer(window)
    settle.setSingleShot(True)
    settle.setInterval(STILL_SETTLE_MS)
    settle.timeout.connect(save_and_quit)

    def give_up(reason: str) -> None:
        # a grab now would only show the failure; waiting would hang until the timeout
        if outcome["saved"] or window.results_shown > 0:
            return
        outcome["saved"] = True
        outcome["code"] = 2
        print(f"deepvis: {reason}", file=sys.stderr)
        window.close()
        finish(2)

    def on_result_shown(count: int) -> None:
        if count >= frames:
            # let this result's repaint and any pending layout run before grabbing
            QTimer.singleShot(0, save_and_quit)
        elif window.source_is_still():
            settle.start()  # restarts: a re-render (layer, unit from the flags) may follow

    if screenshot:
        window.result_shown.connect(on_result_shown)
        window.gave_up.connect(give_up)
        fallback = QTimer(window)
        fallback.setSingleShot(True)
        fallback.timeout.connect(save_and_quit)
        fallback.start(int(screenshot_timeout_s * 1000))
        if frames <= 0:
            QTimer.singleShot(0, save_and_quit)

    window.show()
    previous_sigint = _close_on_sigint(window)
    # quit() from elsewhere (Ctrl+C handlers, the OS) skips closeEvent: stop the backend anyway
    app.aboutToQuit.connect(window.shutdown)
    try:
        with collect_garbage_on_gui_thread():
            code = app.exec() if loop is None else loop.exec()
            window.shutdown()  # the backend's threads end before collection is automatic again
    finally:
        if previous_sigint is not None:
            signal.signal(signal.SIGINT, previous_sigint)
    app.aboutToQuit.disconnect(window.shutdown)
    window.deleteLater()
    return int(outcome["code"]) if screenshot else code


def _close_on_sigint(window: MainWindow) -> Any:
    """Ctrl+C in the terminal closes the window (and so stops the backend) cleanly.

    Python runs signal handlers only between bytecodes, and Qt's loop is C++: a cheap timer
    hands control back to the interpreter a few times a second so the handler can run.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda _sig, _frame: QTimer.singleShot(0, window.close))
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(250)
    return previous
