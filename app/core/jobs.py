"""The one shape of every background analysis: a generator that yields progress.

A job is a generator function (scan, render, ablation curves, and every analysis after
them). It yields a `Progress` (or a subclass carrying previews) at each step boundary and
returns its result, a frozen dataclass. Nobody passes it a cancel flag: `run_job` — the
single driver that the CLI, the GUI's job threads and torchrun all use — checks the
caller's cancel event between steps and closes the generator. Closing raises
GeneratorExit at the `yield` the job is paused on, so its `finally` blocks (checkpoints,
worker processes, hooks) run exactly as on any other exit; then `run_job` raises
`Cancelled`. A step is therefore the unit of cancellation: jobs yield often (every batch,
every optimization step).

What a job can show before it ends (a render's previews, the partial results of a unit
card) rides on the steps it yields (`Progress.preview`): there is no side channel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TypeVar, cast

P = TypeVar("P", bound="Progress")
R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """How far a job is: `done` of `total` steps, and one line for a progress bar."""

    done: int
    total: int
    text: str = ""
    # what the job can show already: a message (a render's preview, a unit's patches) that
    # the GUI's job thread passes on with this step (keyword-only: subclasses add fields)
    preview: object | None = field(default=None, kw_only=True)

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def line(self) -> str:
        return self.text or f"{self.done}/{self.total}"


def clock(seconds: float) -> str:
    """`1:05` or `2:03:09`: a duration for a progress line."""
    s = round(seconds)
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass(frozen=True)
class Outcome:
    """What a window job returns: one line for the user, and its final message if any."""

    text: str
    result: object | None = None


class Cancelled(Exception):
    """The job was cancelled between two steps; whatever it checkpoints is on disk."""


Job = Generator[P, None, R]


def run_job(job: Generator[P, None, R], on_progress: Callable[[P], None] | None = None,
            cancel: threading.Event | None = None) -> R:
    """Drive `job` to its result, reporting each step; raises `Cancelled` when `cancel` is set."""
    try:
        while True:
            if cancel is not None and cancel.is_set():
                job.close()
                raise Cancelled("cancelled")
            step = next(job)
            if on_progress is not None:
                on_progress(step)
    except StopIteration as stop:
        return cast(R, stop.value)
