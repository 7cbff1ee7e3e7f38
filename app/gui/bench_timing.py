"""The GUI's share of `deepvis bench`: what showing one result costs the GUI thread."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from app.core.results import Result
from app.core.settings import Settings

_app: Any = None  # the QApplication this module made, if it had to


def gui_update_ms(settings: Settings, result: Result, calls: int = 200) -> float:
    """Median GUI-thread cost of showing one result, painting included (offscreen)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from app.gui.gui_thread_gc import free_closed_widgets
    from app.gui.main_window import MainWindow

    class _Idle:
        """A backend that never produces anything: only show_result is measured."""

        def __getattr__(self, name: str) -> Any:
            if name in ("model_choices", "poll_events"):
                return lambda: []
            return lambda *a, **k: None

    global _app
    app = QApplication.instance()
    if app is None:
        # kept for the process: an application destroyed with a window's remains about
        # would leave them (and its slot proxies) for good, and a second one is Qt's error
        app = _app = QApplication([])
    # _Idle satisfies LiveBackend for mypy: its __getattr__ answers every method
    window = MainWindow(_Idle(), settings)
    window.resize(settings.gui.width, settings.gui.height)
    window.show()
    app.processEvents()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        window.show_result(result)
        app.processEvents()
        times.append((time.perf_counter() - t0) * 1e3)
    window.close()
    # deleted here, wholly, not whenever the collector reaches the window's cycles: a window
    # torn down in the middle of another widget's construction crashes Qt
    window.deleteLater()
    del window
    free_closed_widgets(app)
    return statistics.median(times)
