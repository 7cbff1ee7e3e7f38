"""Sources: a camera, an image, a video or a folder (File menu, drops on the window), the
folder's next and previous image (N, P), the camera's mirror, and the source shown once
it is open."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.core.messages import Notice, NoticeLevel, SourceFailed, SourceReady
from app.gui import file_dialogs
from app.gui.actions import CAMERAS, Action
from app.gui.features.base import Handler, Window

WAITING = "Waiting for frames…"
LOADING = "Loading model…"


class Sources:
    def __init__(self, w: Window) -> None:
        self.w = w

    def connect(self) -> None:
        pass

    def rows(self) -> Sequence[Action]:
        backend = self.w.backend
        return (
            Action("next_image", "Next image in folder", self.step, "&Navigate",
                   ("N",), (1,)),
            Action("previous_image", "Previous image in folder", self.step,
                   "&Navigate", ("P",), (-1,)),
            Action("mirror", "Mirror camera", backend.set_mirror, "&View", checkable=True),
            Action("open_image", "Open image…", self.ask_source, "&File", ("Ctrl+O",),
                   ("image",)),
            Action("open_folder", "Open folder…", self.ask_source, "&File", ("Ctrl+Shift+O",),
                   ("folder",)),
            Action("open_video", "Open video…", self.ask_source, "&File", args=("video",)),
            *(Action(f"camera:{i}", f"Camera {i}", self.open_source, "&File/Open camera",
                     args=(f"camera:{i}",)) for i in range(CAMERAS)),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {SourceReady: self.on_source_ready, SourceFailed: self.on_source_failed}

    def on_source_ready(self, event: SourceReady) -> None:
        w = self.w
        if w.source_problem:
            w.source_problem = ""
            w.say_in_panes(WAITING if w.model_name else LOADING)
        w.results.set_source(event)

    def on_source_failed(self, event: SourceFailed) -> None:
        """The error notice came just before; the panes say it where a frame would be."""
        w = self.w
        if event.still_showing:
            return
        w.source_problem = f"Cannot show {event.spec}:\n{event.reason}"
        w.say_in_panes(w.source_problem)
        w.gave_up(event.reason)

    def step(self, delta: int) -> None:
        """N, P. Frozen, a step would change nothing on screen until f: say so instead."""
        if self.w.model.frozen:
            self.w.notify(Notice("the frame is frozen: press f to go live, then n / p step "
                                 "through the folder", NoticeLevel.WARNING))
            return
        self.w.backend.step_source(delta)

    def open_source(self, spec: str) -> None:
        self.w.notify(Notice(f"opening {spec}…"))
        self.w.backend.open_source(spec)

    def ask_source(self, kind: str) -> None:
        path = file_dialogs.ask_source(self.w.parent, kind)
        if path:
            self.open_source(path)
