"""Waiting in tests on a condition, never for a fixed time: one helper for every test
that has no Qt loop to spin (the GUI tests use qtbot.waitUntil)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

TICK_S = 0.005  # how often a condition is re-checked while it is false


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """True as soon as `condition()` holds; False if it still does not after `timeout` s."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: wait() is an interruptible pause between checks
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        tick.wait(TICK_S)
    return True


def collect_events(backend: Any, until: Callable[[Sequence[Any]], bool],
                   timeout: float = 60.0) -> list[Any]:
    """A backend's events (results taken and dropped meanwhile) until `until(events)` holds."""
    seen: list[Any] = []

    def arrived() -> bool:
        seen.extend(backend.poll_events())
        backend.poll_result()
        return until(seen)

    if not wait_until(arrived, timeout):
        raise AssertionError(f"timed out; events: {[type(e).__name__ for e in seen]}")
    return seen


def next_result(backend: Any, accept: Callable[[Any], bool] = lambda r: True,
                timeout: float = 60.0) -> Any:
    """The first result from `backend.poll_result()` that `accept`s, or AssertionError."""
    found: list[Any] = []

    def arrived() -> bool:
        r = backend.poll_result()
        if r is not None and accept(r):
            found.append(r)
        return bool(found)

    if not wait_until(arrived, timeout):
        raise AssertionError("timed out waiting for a result")
    return found[0]


def job_finished(backend: Any, kind: str, timeout: float = 60.0) -> tuple[list[Any], Any]:
    """A backend's events until its job of `kind` ends: (those events, the job's last
    JobEvent)."""
    from app.core.requests import JobEvent

    def ended(e: Any) -> bool:
        return isinstance(e, JobEvent) and e.finished and e.kind == kind

    events = collect_events(backend, lambda ev: any(ended(e) for e in ev), timeout)
    return events, next(e for e in events if ended(e))
