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


def _free_closed_windows(rounds: int) -> None:
    """What closed windows left, deleted and collected here (`free_closed_widgets`)."""
    from PyQt6.QtWidgets import QApplication

    from app.gui.gui_thread_gc import free_closed_widgets

    app = QApplication.instance()
    if app is not None:
        free_closed_widgets(app, rounds)


def _windows_alive() -> list:
    """The main windows any Python object still holds (a closed one must hold none)."""
    main_window = sys.modules.get("app.gui.main_window")
    if main_window is None:
        return []
    # type(), not isinstance(): isinstance asks some lazy module proxies for __class__
    return [obj for obj in gc.get_objects() if issubclass(type(obj), main_window.MainWindow)]


_collection_paused = False


@pytest.fixture(autouse=True)
def no_dead_windows_left(request: pytest.FixtureRequest):
    """Each window test starts with no earlier window alive and collects only on this thread.

    While an earlier window's Python side is alive its wrappers of Qt-created objects stay
    registered, and a new object at a freed address is handed one of them: a new window
    built in that gap crashed inside pyqtgraph (CI, 1 run in ~5). And a collection run by a
    backend's thread would destroy Qt objects off the GUI thread. So from a window test's
    start until pytest has dropped its fixtures the collector runs here only (as the app's
    window does: `gui_thread_gc`), and what the test's windows left is freed after it.
    """
    global _collection_paused
    if "qtbot" in request.fixturenames and "PyQt6.QtWidgets" in sys.modules:
        # the last window test freed its own (below); a window made since, e.g. by
        # `deepvis bench` in-process, is freed here; one still held fails the test
        if _windows_alive():  # (the list is dropped at once: it would hold them)
            _free_closed_windows(rounds=4)
            left = len(_windows_alive())
            assert not left, f"{left} window(s) of an earlier test still held by Python"
        if gc.isenabled():
            gc.disable()
            _collection_paused = True
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After a window test (its fixture values dropped): free its windows, collect as before."""
    global _collection_paused
    try:
        return (yield)
    finally:
        if _collection_paused:
            _free_closed_windows(rounds=1)  # one full collection: ~0.2 s a window test
            gc.enable()
            _collection_paused = False
