"""The GUI's share of `deepvis bench`: what showing one result costs the GUI thread."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from app.core.messages import Result
from app.core.settings import Settings


def gui_update_ms(settings: Settings, result: Result, calls: int = 200) -> float:
    """Median GUI-thread cost of showing one result, painting included (offscreen)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow

    class _Idle:
        """A backend that never produces anything: only show_result is measured."""

        def __getattr__(self, name: str) -> Any:
            if name in ("model_choices", "poll_events"):
                return lambda: []
            return lambda *a, **k: None

    app = QApplication.instance() or QApplication([])
    window = MainWindow(_Idle(), settings)  # type: ignore[arg-type]  # duck-typed backend
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
    app.processEvents()
    return statistics.median(times)
