"""The interface the GUI drives. The composition root hands the GUI an implementation.

Every method returns at once: work happens on the capture, inference and loader threads,
and its outcome comes back through `poll_result` and `poll_events`.
"""

from __future__ import annotations

from typing import Protocol

from app.core.messages import ModelChoice, ModelReady, Notice, Result, SourceReady, ViewState

Event = Notice | ModelReady | SourceReady


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
        """Switch to `camera:N`, a video, an image or a folder of images."""
        ...

    def step_source(self, delta: int) -> None:
        """Next (+1) or previous (-1) image of a folder source; ignored otherwise."""
        ...

    def set_mirror(self, mirror: bool) -> None: ...

    def load_model(self, spec: str) -> None:
        """Load a model in the background; `ModelReady` or an error `Notice` follows."""
        ...

    def model_choices(self) -> list[ModelChoice]: ...

    def stop(self) -> None:
        """Stop every thread and release the camera; returns when they have ended."""
        ...
