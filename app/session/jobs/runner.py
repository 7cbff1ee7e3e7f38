"""The session's job machinery: which job answers which request, and the threads that
run them.

Registry: one `(context, request) -> Job` per request type, registered where it is written
(`@job_for(ScanRequest)`, as timm registers models). A job is a generator
(`app.core.jobs`): what it can show before it ends rides on its steps (`Progress.preview`),
and it returns an `Outcome` (one line, and its final message if it has one). A factory may
return None (nothing to do: the layer is gone since the click) or raise `Refused` (the user
asked for something impossible: said as an error).

Runner: at most one running job per kind, each on a thread of its own, driven by `run_job`
on a niced thread; each step goes back as a `JobEvent` (only when its progress changed, at
most every `PROGRESS_S` unless it finishes a stage — but a step that carries a preview
always), and its end as a final `JobEvent` with the outcome. A newer request of a kind
supersedes the running job quietly (its end is no news); an equal request while it runs is
dropped; the user's cancel is reported. Cancelling closes the generator between two steps,
so its `finally` blocks run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.core.jobs import Cancelled, Job, Outcome, Progress, run_job
from app.core.requests import JobEvent, JobState, Request
from app.core.settings import Settings
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.truncate import private_copy

SessionJob = Job[Progress, Outcome]
Q = TypeVar("Q", bound=Request)
Factory = Callable[[Any, Any], SessionJob | None]

_FACTORIES: dict[type[Request], Factory] = {}


class Refused(Exception):
    """A request that cannot start (no such folder); its text is the user's error line."""


@dataclass(frozen=True)
class JobContext:
    """What a job works with: the settings, the loaded model (the live one: a job that
    changes it works on `private_model()`), each layer's channel count, and the frames
    the session has seen (`seen_frames()`: a folder of them, `session.seen_frames`)."""

    settings: Settings
    loaded: LoadedModel
    channels: Mapping[str, int]
    seen_frames: Callable[[], Path] | None = None

    def private_model(self) -> LoadedModel:
        """The same model for a job: a copy without the live recorder's or ablation's hooks."""
        return dataclasses.replace(self.loaded, module=private_copy(self.loaded.module,
                                                                    self.loaded.device))

    def folder(self, folder: str) -> str:
        """`folder` when it is one; else `Refused`."""
        if not Path(folder).expanduser().is_dir():
            raise Refused(f"folder not found: {folder}")
        return folder


def job_for(request_type: type[Q]) -> Callable[[Callable[[JobContext, Q], SessionJob | None]],
                                               Callable[[JobContext, Q], SessionJob | None]]:
    """Register the decorated function as the job that answers `request_type`."""

    def register(factory: Callable[[JobContext, Q], SessionJob | None]
                 ) -> Callable[[JobContext, Q], SessionJob | None]:
        if request_type in _FACTORIES:
            raise ValueError(f"a job for {request_type.__name__} is registered twice")
        _FACTORIES[request_type] = factory
        return factory

    return register


def make_job(context: JobContext, request: Request) -> SessionJob | None:
    """The job that answers `request` (None: nothing to do); `Refused`, or KeyError when no
    job is registered for its type."""
    factory = _FACTORIES.get(type(request))
    if factory is None:
        raise KeyError(f"no job answers {type(request).__name__}")
    return factory(context, request)


def registered() -> tuple[type[Request], ...]:
    return tuple(_FACTORIES)


def drain(job: SessionJob) -> tuple[list[object], Outcome]:
    """Run a job here to its end: its previews in order, and its outcome (scripts, tests)."""
    previews: list[object] = []
    outcome = run_job(job, lambda p: previews.append(p.preview) if p.preview is not None
                      else None)
    return previews, outcome


# -- running them ------------------------------------------------------------------------

Post = Callable[[JobEvent], None]
JOB_NICENESS = 10
PROGRESS_S = 0.1  # a job's progress reaches the GUI at most this often


class Jobs:
    """At most one running job per kind; `stop()` cancels and joins them all."""

    def __init__(self, post: Post) -> None:
        self._post = post
        self._lock = threading.Lock()
        self._running: dict[str, tuple[Request, threading.Event]] = {}
        self._superseded: weakref.WeakSet[threading.Event] = weakref.WeakSet()
        # every thread started, cancelled ones too: they may still be winding down
        self._threads: list[threading.Thread] = []

    def start(self, request: Request,
              make: Job[Progress, Outcome | str] | Callable[[], Job[Progress, Outcome | str] | None]
              ) -> bool:
        """Run the job for `request` (a generator, or a function making it: not called when
        the request is dropped) on a new thread, replacing the running job of its kind.
        False: an equal request is running already (the one place requests de-duplicate),
        or `make` had nothing to do."""
        with self._lock:
            entry = self._running.get(request.kind)
            if entry is not None and entry[0] == request and not entry[1].is_set():
                return False
        job = make() if callable(make) else make
        if job is None:
            return False
        self.cancel(request.kind, quiet=True)
        cancel = threading.Event()
        thread = threading.Thread(target=self._run, args=(request, job, cancel),
                                  name=f"deepvis-job-{request.kind}", daemon=True)
        with self._lock:
            self._running[request.kind] = (request, cancel)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return True

    def _run(self, request: Request, job: Job[Progress, Outcome | str],
             cancel: threading.Event) -> None:
        _lower_priority()
        kind = request.kind
        try:
            out = run_job(job, _StepPoster(request, self._post), cancel)
            outcome = out if isinstance(out, Outcome) else Outcome(out)
            end = JobEvent(request, 1, 1, outcome.text, result=outcome.result,
                           state=JobState.OK)
        except Cancelled:
            end = JobEvent(request, text=f"{kind} cancelled", state=JobState.CANCELLED)
        except Refused as exc:  # found out once running: the user's error line as it is
            end = JobEvent(request, text=str(exc).splitlines()[0], state=JobState.FAILED)
        except Exception as exc:  # a job's failure is the user's news, not a crash
            if cancel.is_set():
                end = JobEvent(request, text=f"{kind} cancelled", state=JobState.CANCELLED)
            else:
                msg = f"{kind} failed: {type(exc).__name__}: {exc}".splitlines()[0]
                end = JobEvent(request, text=msg, state=JobState.FAILED)
        with self._lock:
            entry = self._running.get(kind)
            if entry is not None and entry[1] is cancel:
                del self._running[kind]
        if cancel not in self._superseded:  # a job replaced by a newer one is not news
            self._post(end)

    def cancel(self, kind: str, quiet: bool = False) -> None:
        """Stop the running job of `kind`; `quiet`: it was replaced, so it reports nothing."""
        with self._lock:
            entry = self._running.pop(kind, None)
        if entry is not None:
            if quiet:
                self._superseded.add(entry[1])
            entry[1].set()  # the thread notices within one step and ends by itself

    def cancel_all(self) -> None:
        """Cancel every running job (each reports that it was cancelled)."""
        with self._lock:
            kinds = list(self._running)
        for kind in kinds:
            self.cancel(kind)

    def stop(self) -> None:
        """Cancel every job and wait for all their threads, cancelled ones included."""
        with self._lock:
            entries = list(self._running.values())
            self._running.clear()
            threads = list(self._threads)
        for _request, cancel in entries:
            cancel.set()
        for thread in threads:
            thread.join()


class _StepPoster:
    """Posts a job's steps as `JobEvent`s: only changes, and at most every `PROGRESS_S`
    unless the step finishes a stage (a render yields a step every few milliseconds); a
    step with a preview always goes (it is a picture or a partial result, not a count)."""

    def __init__(self, request: Request, post: Post) -> None:
        self.request, self.post = request, post
        self.last: tuple[int, int, str] | None = None
        self.last_s = 0.0

    def __call__(self, p: Progress) -> None:
        key, now = (p.done, p.total, p.line()), time.monotonic()
        if p.preview is not None or (
                key != self.last and (p.finished or now - self.last_s >= PROGRESS_S)):
            self.last, self.last_s = key, now
            self.post(JobEvent(self.request, p.done, max(p.total, 1), p.line(),
                               preview=p.preview))


def _lower_priority() -> None:
    """Let the live view win the CPU: nice this job thread (and the OpenMP threads torch
    starts from it, which inherit it) where the OS allows per-thread priorities."""
    # not Linux, or not permitted: the job runs at normal priority
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
