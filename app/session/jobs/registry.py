"""Which session job answers which request: one `(context, request) -> Job` per request
type, registered where it is written (`@job_for(ScanRequest)`, as timm registers models).

A job is a generator (`app.core.jobs`): what it can show before it ends rides on its
steps (`Progress.preview`), and it returns an `Outcome` (one line, and its final message
if it has one). A factory may return None (nothing to do: the layer is gone since the
click) or raise `Refused` (the user asked for something impossible: said as an error).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.core.jobs import Job, Outcome, Progress, run_job
from app.core.requests import Request
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
    changes it works on `private_model()`), and each layer's channel count."""

    settings: Settings
    loaded: LoadedModel
    channels: Mapping[str, int]

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
