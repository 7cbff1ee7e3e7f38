"""Shared fixtures; every test must leave no thread running behind it."""

from __future__ import annotations

import os
import threading
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
