"""Shows the backend's events through the features' handler maps.

Every event is a message with a handler (`{message type: handler}`, joined from the
feature modules) or a `JobEvent`. A job event's preview or result goes to the handler of
its type; what every job shares is done here, from what its request type declares: its
bar in the status bar and its Cancel action while it runs (not for a `quiet` one, nor a
bar for one whose pane shows its steps), a notice when it ends. Then the handler of its
request type, if its feature has one, sees the step or the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from app.core.backend import Event
from app.core.messages import Notice, NoticeLevel
from app.core.requests import JobEvent
from app.gui.actions import ActionSet
from app.gui.features.base import Handler
from app.gui.status_bar import StatusBar


class EventPresenter:
    """Turns each backend event into pane updates; `handle` is its one entry."""

    def __init__(self, handlers: Mapping[type, Handler], status: StatusBar,
                 actions: ActionSet, notify: Callable[[Notice], None]) -> None:
        self._handlers = dict(handlers)
        self._status = status
        self._actions = actions
        self._notify = notify

    def handle(self, event: Event) -> None:
        """React to one backend event."""
        if isinstance(event, JobEvent):
            self._on_job(event)
        else:
            self._dispatch(event)

    def _dispatch(self, message: object) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message)

    def _on_job(self, event: JobEvent) -> None:
        request = type(event.request)
        if event.preview is not None:
            self._dispatch(event.preview)
        if event.result is not None:
            self._dispatch(event.result)
        if not request.quiet:
            cancel = f"cancel:{event.kind}"
            if cancel in self._actions:
                self._actions[cancel].setEnabled(not event.finished)
            if event.finished:
                self._status.end_job(event.kind)
            elif request.progress_bar:
                self._status.show_job(event)
        self._dispatch_job(event)
        if event.finished and not request.quiet:
            level = NoticeLevel.INFO if event.ok else NoticeLevel.WARNING
            self._notify(Notice(f"{request.label}: {event.text}", level))

    def _dispatch_job(self, event: JobEvent) -> None:
        handler = self._handlers.get(type(event.request))
        if handler is not None:
            handler(event)
