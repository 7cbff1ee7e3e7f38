"""The GUI's share of `deepvis bench`: what showing one result costs the GUI thread."""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

from app.core.results import Result
from app.core.settings import Settings


def gui_update_ms(settings: Settings, result: Result, calls: int = 200) -> float:
    """Median GUI-thread cost of showing one result, painting included (offscreen)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import QEvent
    from PyQt6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow

    class _Idle:
        """A backend that never produces anything: only show_result is measured."""

        def __getattr__(self, name: str) -> Any:
            if name in ("model_choices", "poll_events"):
                return lambda: []
            return lambda *a, **k: None

    app = QApplication.instance() or QApplication([])
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
    # deleted here, not whenever the garbage collector reaches the window's reference
    # cycles: a window torn down in the middle of another widget's construction crashes Qt
    window.deleteLater()
    for _ in range(3):  # the window, then PyQt's slot proxies that hold its lambdas
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    del window
    gc.collect()
    return statistics.median(times)
