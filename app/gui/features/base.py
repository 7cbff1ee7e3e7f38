"""What every feature is given, and what it gives back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core.backend import LiveBackend
from app.core.messages import Notice
from app.core.settings import Settings
from app.gui.actions import Action, ActionSet
from app.gui.preferred_grid import PreferredGridMode
from app.gui.result_presenter import ResultPresenter
from app.gui.status_bar import StatusBar
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout

Handler = Callable[[Any], None]


@dataclass
class Window:
    """The window's parts a feature works with (the actions exist once every feature has
    given its rows: `actions` is set then)."""

    backend: LiveBackend
    settings: Settings
    model: ViewModel
    panes: WindowLayout
    status: StatusBar
    results: ResultPresenter
    preferred_grid: PreferredGridMode
    notify: Callable[[Notice], None]
    parent: Any  # the QMainWindow: dialogs' parent
    actions: ActionSet | None = field(default=None)
    model_name: str = ""  # the loaded model's (set when it is ready)
    # why no frame can show (a source that failed), "" while none failed
    source_problem: str = ""
    # no frame will come (the source or, with none loaded, the model failed): the reason
    gave_up: Callable[[str], None] = field(default=lambda _reason: None)

    def say_in_panes(self, text: str) -> None:
        """What the frame panes say while they have nothing to show."""
        self.panes.input.set_placeholder(text)
        self.panes.grid.set_placeholder(text)
        self.panes.unit.set_placeholder(text)


class Feature(Protocol):
    def connect(self) -> None:
        """Wire its panes' signals (after every feature exists)."""
        ...

    def rows(self) -> Sequence[Action]: ...

    def handlers(self) -> Mapping[type, Handler]: ...
