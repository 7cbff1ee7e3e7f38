"""The interface the GUI drives. The composition root hands the GUI an implementation.

Every method returns at once: work happens on the capture, inference, loader and job
threads, and its outcome comes back through `poll_result` and `poll_events`. Background
work is asked for with one call, `submit(request)` (the request types are in
`app/core/requests.py`), and answered with `JobEvent`s: a new kind of job adds a request
type, not a method here.
"""

from __future__ import annotations

from typing import Protocol

from app.core.messages import (
    ModelChoice,
    ModelFailed,
    ModelReady,
    Notice,
    SourceFailed,
    SourceReady,
)
from app.core.requests import JobEvent, Request
from app.core.results import Result
from app.core.view import ViewState

Event = Notice | ModelReady | ModelFailed | SourceReady | SourceFailed | JobEvent


class LiveBackend(Protocol):
    def poll_result(self) -> Result | None:
        """The newest result not yet returned, or None."""
        ...

    def poll_events(self) -> list[Event]:
        """Events since the last call, oldest first."""
        ...

    def set_view(self, view: ViewState) -> None:
        """Layer, unit, normalization or freeze changed; a frozen frame is re-rendered."""
        ...

    def open_source(self, spec: str) -> None:
        """Switch to `camera:N`, a video, an image or a folder of images; `SourceReady`,
        or an error `Notice` and `SourceFailed`, follows."""
        ...

    def step_source(self, delta: int) -> None:
        """Next (+1) or previous (-1) image of a folder source; ignored otherwise."""
        ...

    def set_mirror(self, mirror: bool) -> None: ...

    def load_model(self, spec: str) -> None:
        """Load a model in the background; `ModelReady`, or an error `Notice` and
        `ModelFailed`, follows. The first model failing falls back to the bundled one (a
        warning `Notice` says so, then its `ModelReady`)."""
        ...

    def model_choices(self) -> list[ModelChoice]: ...

    def architectures(self) -> list[str]:
        """Architecture names a state_dict can be loaded into, as `ARCH:PATH`."""
        ...

    def submit(self, request: Request) -> None:
        """Start the job that answers `request` (it supersedes the running job of its kind;
        the same request while it runs is dropped); `JobEvent`s follow."""
        ...

    def cancel(self, kind: str) -> None:
        """Cancel the running job of `kind` (a request type's `kind`); it ends cancelled."""
        ...

    def stop(self) -> None:
        """Stop every thread and release the camera; returns when they have ended."""
        ...
