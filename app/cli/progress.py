"""The one progress bar of every command: a job's `Progress` as a line on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from app.core.jobs import Progress


class TextProgress:
    """A one-line progress bar on a stream: redrawn in place on a terminal, else a line
    every few seconds (logs stay short). Call it with each `Progress`; `close()` at the end."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 24,
                 every_s: float = 5.0) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width, self.every_s = width, every_s
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._open = False  # a redrawn line is on screen without its newline

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        due = now - self._last >= (0.1 if self.tty else self.every_s)
        if not (due or p.finished):
            return
        self._last = now
        filled = int(self.width * min(p.done, p.total) / max(p.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"{self.label}: [{bar}] {p.line()}"
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
