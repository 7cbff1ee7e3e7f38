"""The one progress bar of every command: a job's `Progress` as a line on stderr.

The bar adds how long the job has run and how long it has left, estimated from the start
(the bar's creation) at the job's mean pace so far, unless the job times itself (a progress
with its own `eta_s`, as scan and dissection measure their images per second).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from app.core.jobs import Progress, clock


def timing(done: int, total: int, elapsed_s: float) -> str:
    """`40 % · 0:12 elapsed · ETA 0:18`: the share done and the time left at the mean pace."""
    if total > 0 and done >= total:
        return f"done in {clock(elapsed_s)}"
    if done <= 0 or total <= 0:
        return f"{clock(elapsed_s)} elapsed · ETA --:--"
    left = elapsed_s * (total - done) / done
    return f"{100 * done // total} % · {clock(elapsed_s)} elapsed · ETA {clock(left)}"


class TextProgress:
    """A one-line progress bar on a stream: redrawn in place on a terminal, else a line
    every few seconds (logs stay short). Call it with each `Progress`; `close()` at the end.

    `now`: the clock (seconds), for tests."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 24,
                 every_s: float = 5.0, now: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width, self.every_s = width, every_s
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._now = now
        self._started = now()
        self._last: float | None = None
        self._open = False  # a redrawn line is on screen without its newline

    def __call__(self, p: Progress) -> None:
        now = self._now()
        due = self._last is None or now - self._last >= (0.1 if self.tty else self.every_s)
        if not (due or p.finished):
            return
        self._last = now
        filled = int(self.width * min(p.done, p.total) / max(p.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"{self.label}: [{bar}] {p.line()}"
        if not hasattr(p, "eta_s"):
            text += "  " + timing(p.done, p.total, now - self._started)
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line, so what is printed next starts on a line of its own."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
