"""The main window: a shell that lays out the panes, builds the features and polls.

Nothing here computes or displays data itself. The backend's threads do the work; a timer
polls it, and what comes back goes to the presenters (`ResultPresenter` for frames,
`EventPresenter` for everything else, through the handler maps of the feature modules in
`app/gui/features/`). Each feature wires its panes, gives its rows of the action table
(menus, shortcuts and the help card come from that one table, `actions.py`) and handles
its messages and jobs. The window stays responsive while a model loads or a source fails.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PyQt6.QtCore import QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication
from PyQt6.QtWidgets import QMainWindow, QWidget

from app.core.backend import Event, LiveBackend
from app.core.messages import (
    AblationMode,
    AttributionMode,
    ModelChoice,
    Normalization,
    Notice,
    NoticeLevel,
)
from app.core.requests import request_types
from app.core.results import Result
from app.core.settings import Settings
from app.gui import theme
from app.gui.actions import (
    EXPORTABLE_PANES,
    ActionSet,
    assemble,
    build_actions,
    cancel_rows,
    help_rows,
    with_models,
)
from app.gui.event_presenter import EventPresenter
from app.gui.features.ablation import Ablation
from app.gui.features.atlas import Atlas
from app.gui.features.base import Feature, Handler, Window
from app.gui.features.card import Card
from app.gui.features.concepts import Concepts
from app.gui.features.dissection import Dissection
from app.gui.features.explain import Explain
from app.gui.features.model import Model
from app.gui.features.sources import Sources
from app.gui.features.tcav import ConceptTests
from app.gui.features.units import Units
from app.gui.features.view import View
from app.gui.preferred_grid import PreferredGridMode
from app.gui.result_presenter import ResultPresenter
from app.gui.snapshot import save_widget_png
from app.gui.status_bar import StatusBar
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout, start_size

log = logging.getLogger(__name__)


class Features:
    """The window's features, by name (tests and the driver reach their public methods)."""

    def __init__(self, w: Window, initial_layer: str | None, initial_unit: int | None) -> None:
        self.view = View(w)
        self.sources = Sources(w)
        self.units = Units(w)
        self.card = Card(w)
        self.ablation = Ablation(w)
        self.dissection = Dissection(w)
        self.concepts = Concepts(w)
        self.concept_tests = ConceptTests(w)
        self.atlas = Atlas(w)
        self.explain = Explain(w)
        self.model = Model(w, initial_layer, initial_unit)

    def all(self) -> tuple[Feature, ...]:
        return (self.view, self.sources, self.units, self.card, self.ablation,
                self.dissection, self.concepts, self.concept_tests, self.atlas, self.explain,
                self.model)

    def handlers(self) -> dict[type, Handler]:
        """Every feature's handlers; several for one type run in the features' order."""
        joined: dict[type, list[Handler]] = {}
        for feature in self.all():
            for kind, handler in feature.handlers().items():
                joined.setdefault(kind, []).append(handler)
        return {kind: _each(handlers) for kind, handlers in joined.items()}


def _each(handlers: list[Handler]) -> Handler:
    if len(handlers) == 1:
        return handlers[0]

    def each(message: object) -> None:
        for handler in handlers:
            handler(message)

    return each


class MainWindow(QMainWindow):
    """The live view. `show_result` is the single entry for displaying a result."""

    result_shown = pyqtSignal(int)  # how many results have been shown so far
    refreshed = pyqtSignal()  # one poll of the backend was handled (tests wait on it)
    closed = pyqtSignal()  # the window was closed (its backend is stopped by then)
    # no frame will come: the source failed, or the model did with none to fall back on
    gave_up = pyqtSignal(str)

    def __init__(
        self,
        backend: LiveBackend,
        settings: Settings,
        initial_layer: str | None = None,
        initial_unit: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self._stopped = False
        self.setWindowTitle("DeepVis Live")
        self.setObjectName("mainWindow")
        self.setStyleSheet(theme.STYLE_SHEET)
        self.setAcceptDrops(True)
        screen = QGuiApplication.primaryScreen()
        free = screen.availableGeometry() if screen is not None else None
        size = start_size((settings.gui.width, settings.gui.height),
                          (free.width(), free.height()) if free is not None else None)
        self.resize(*size)

        self.view_model = ViewModel(Normalization(settings.view.normalization), self)
        self.panes = WindowLayout(settings, self, size)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.preferred_grid = PreferredGridMode(backend, self.panes.grid, self)
        self.results = ResultPresenter(
            self.view_model, self.panes, self.status, self.preferred_grid, self
        )
        self.parts = Window(backend, settings, self.view_model, self.panes, self.status,
                            self.results, self.preferred_grid, self.show_notice, self,
                            gave_up=self.gave_up.emit)
        self.features = Features(self.parts, initial_layer or settings.view.layer or None,
                                 settings.view.unit if initial_unit is None else initial_unit)
        self.view_model.view_changed.connect(self.backend.set_view)
        self.status.cancel_requested.connect(self.backend.cancel)
        self.action_set = self.parts.actions = self._build_actions()
        for feature in self.features.all():
            feature.connect()
        self.events = EventPresenter(self.features.handlers(), self.status, self.action_set,
                                     self.show_notice)
        self.results.result_shown.connect(self.result_shown)
        self.set_colormap(settings.view.colormap)

        self._timer = QTimer(self)
        self._timer.setInterval(settings.gui.refresh_ms)
        self._timer.timeout.connect(self._on_refresh)
        self._timer.start()

    def _build_actions(self) -> ActionSet:
        choices: list[ModelChoice] = []
        try:
            choices = self.backend.model_choices()
        except Exception as exc:  # a broken registry must not keep the window from opening
            log.exception("model_choices failed")
            self.show_notice(Notice(f"cannot list models: {exc}", NoticeLevel.ERROR))
        rows = [row for feature in self.features.all() for row in feature.rows()]
        rows += cancel_rows(request_types(), self.backend.cancel)  # each type says if
        self.action_table = with_models(assemble(rows), choices, self.load_model)
        checked = {
            f"normalization:{self.view_model.normalization}": True,
            f"colormap:{self.settings.view.colormap}": True,
            f"attribution:{AttributionMode.OFF}": True,
            f"ablation_mode:{AblationMode.ZERO}": True,
            "overlay": True,
            "mirror": self.settings.source.mirror,
        }
        bar = self.menuBar()
        assert bar is not None  # a QMainWindow makes its menu bar on first use
        actions = build_actions(self, bar, self.action_table, checked)
        self.panes.help.set_rows("Keys", help_rows(self.action_table))
        self.panes.add_export_actions(
            {name: actions[f"export:{name}"] for name, _ in EXPORTABLE_PANES})
        return actions

    # ------------------------------------------------------------------ public API

    @property
    def last_result(self) -> Result | None:
        return self.results.last_result

    @property
    def results_shown(self) -> int:
        return self.results.results_shown

    def source_is_still(self) -> bool:
        """Whether the open source gives frames only when asked (an image, a folder)."""
        return self.results.source_is_still()

    def show_result(self, result: Result) -> None:
        """Display one result (see `ResultPresenter.show_result`)."""
        self.results.show_result(result)

    def handle_event(self, event: Event) -> None:
        """React to one backend event."""
        self.events.handle(event)

    def show_notice(self, notice: Notice) -> None:
        """Put a message in the status bar for a few seconds and in the log."""
        stamp = time.strftime("%H:%M:%S")
        self.status.show_notice(stamp, notice)
        self.panes.messages.append(f"{stamp}  {notice.text}")

    def open_source(self, spec: str) -> None:
        self.features.sources.open_source(spec)

    def load_model(self, spec: str) -> None:
        self.features.model.load_model(spec)

    def set_colormap(self, name: str) -> None:
        self.features.view.set_colormap(name)

    def save_screenshot(self, path: str | Path) -> Path:
        """Grab the window to a PNG (atomically); raises OSError."""
        return save_widget_png(self, path)

    def export_pane(self, name: str, path: str | Path) -> Path:
        """One pane (actions.EXPORTABLE_PANES) as a PNG, atomically; raises OSError."""
        return self.features.view.export_pane(name, path)

    def save_unit_report(self, path: str | Path) -> tuple[Path, Path]:
        """The unit card as `path` (PNG) and the same name .html; raises OSError."""
        return self.features.card.save_report(path)

    def is_polling(self) -> bool:
        """Whether the window still polls its backend (not after `shutdown`)."""
        return self._timer.isActive()

    def shutdown(self) -> None:
        """Stop polling and stop the backend; only the first call does anything."""
        if self._stopped:
            return
        self._stopped = True
        self._timer.stop()
        self.status.stop()
        self.backend.stop()
        self.panes.patch_dialog.wait_idle()  # a source image being decoded: at most one
        self.panes.dissection.wait_idle()  # and a unit's strip

    # ------------------------------------------------------------------ backend traffic

    def _on_refresh(self) -> None:
        try:
            for event in self.backend.poll_events():
                self.handle_event(event)
            result = self.backend.poll_result()
            if result is not None:
                self.show_result(result)
        except Exception as exc:
            # an exception escaping a Qt slot aborts PyQt6; a bad frame must not end the app
            log.exception("error while showing a result")
            self.show_notice(Notice(f"display error: {exc}", NoticeLevel.ERROR))
        self.refreshed.emit()

    # ------------------------------------------------------------------ Qt events

    def dragEnterEvent(self, event: QDragEnterEvent | None) -> None:
        if event is None:
            return
        mime = event.mimeData()
        if mime is not None and any(u.isLocalFile() for u in mime.urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent | None) -> None:
        if event is None:
            return
        mime = event.mimeData()
        paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime else []
        if paths:
            event.acceptProposedAction()
            self.open_source(paths[0])

    def closeEvent(self, event: QCloseEvent | None) -> None:
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()
