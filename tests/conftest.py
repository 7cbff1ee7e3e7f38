"""Shared fixtures; every test must leave no thread running behind it."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the app's log file (warnings, Qt's messages) is not the user's while tests run
os.environ.setdefault("DEEPVIS_LOG", os.path.join(tempfile.mkdtemp(prefix="deepvis-test-"),
                                                  "deepvis.log"))

# nor is its cache: analyses called without `cache_dir` (and the CLI run in a subprocess)
# write their caches, direction sets included, under a folder of this run's own
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="deepvis-test-cache-")

try:
    # tqdm (torch.export and timm's hub client use it when installed) starts a
    # process-wide monitor thread on its first bar, which no test could stop
    import tqdm

    tqdm.tqdm.monitor_interval = 0
except ImportError:
    pass


@pytest.fixture
def backend():
    """The fake backend a GUI test's window talks to (a module may define its own)."""
    from fake_backend import FakeBackend  # here: tests without a window load no Qt

    return FakeBackend()


@pytest.fixture
def ui(qtbot, backend):
    """The real window on `backend`, its first results shown."""
    from gui_driver import WindowDriver

    driver = WindowDriver.open(qtbot, backend)
    driver.wait_for_results()
    return driver


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Fail any test that leaves a thread (capture, worker, loader, QThread) running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    for thread in [t for t in threading.enumerate() if t not in before]:
        thread.join(max(deadline - time.monotonic(), 0.0))  # a stopping thread gets 3 s
    extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not extra, f"threads left running: {[t.name for t in extra]}"


@pytest.fixture(autouse=True)
def no_dead_windows_left(request: pytest.FixtureRequest):
    """Free what earlier tests' windows left before this test builds its own.

    A deleted window's Python side lives on until PyQt's slot proxies (deleted later, by the
    event loop) drop its lambdas and the collector breaks its cycles. Until then its
    wrappers of Qt-created objects stay registered, and a new object at a freed address is
    handed one of them: a new window built in that gap crashes inside pyqtgraph.
    """
    if "qtbot" in request.fixturenames and "PyQt6.QtWidgets" in sys.modules:
        from PyQt6.QtCore import QEvent
        from PyQt6.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            for _ in range(3):  # a deletion can post the next one (the proxies)
                app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
            gc.collect()
    yield
