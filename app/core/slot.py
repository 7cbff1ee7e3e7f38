"""A single-item mailbox between threads: the newest item wins, nothing queues."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; `put` replaces an unread item and counts it as dropped.

    A slow consumer therefore only ever sees the newest item, which is what a live view
    wants (a camera that buffers frames shows the past otherwise).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        self.dropped = 0
        self.delivered = 0
        # called after each put, outside the lock: lets a consumer that also waits on
        # other things (view changes) wake at once instead of polling
        self.listener: Callable[[], None] | None = None

    def put(self, item: T) -> None:
        with self._cond:
            if self._has_item:
                self.dropped += 1
            self._item = item
            self._has_item = True
            self._cond.notify_all()
        if self.listener is not None:
            self.listener()

    def take(self) -> T | None:
        """Return the newest item and empty the slot, or None at once if it is empty."""
        with self._cond:
            return self._take_locked()

    def wait_take(self, timeout: float) -> T | None:
        """Wait up to `timeout` seconds for an item; None on time-out or when closed."""
        with self._cond:
            if not self._has_item and not self._closed:
                self._cond.wait(timeout)
            return self._take_locked()

    def peek(self) -> T | None:
        """The newest item without taking it (None when empty)."""
        with self._cond:
            return self._item if self._has_item else None

    def close(self) -> None:
        """Wake every waiter; later waits return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def _take_locked(self) -> T | None:
        if not self._has_item:
            return None
        item = self._item
        self._item = None
        self._has_item = False
        self.delivered += 1
        return item
