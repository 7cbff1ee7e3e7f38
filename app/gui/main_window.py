"""The main window: a shell that lays out the panes, wires them to the view model and polls.

Nothing here computes or displays data itself. The backend's threads do the work; a timer
polls it, and what comes back goes to the presenters (`ResultPresenter` for frames,
`EventPresenter` for everything else). User input goes to the `ViewModel`, whose change
signals both send the new view to the backend and update the panes. Menus, shortcuts and
the help card come from one table (`actions.py`); the slots it names are here or on the
view model. The window stays responsive while a model loads or a source fails.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

from PyQt6.QtCore import QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication
from PyQt6.QtWidgets import QMainWindow, QWidget

from app.core.backend import Event, LiveBackend
from app.core.messages import (
    LOGITS,
    AblationMode,
    AttributionMode,
    JobKind,
    ModelChoice,
    Normalization,
    Notice,
    NoticeLevel,
    Patch,
)
from app.core.results import Result
from app.core.settings import Settings
from app.gui import file_dialogs, theme
from app.gui.actions import (
    ACTIONS,
    EXPORTABLE_PANES,
    ActionSet,
    build_actions,
    help_rows,
    with_models,
)
from app.gui.attribution_view import MODE_TEXT
from app.gui.centre_tabs import CentreTabs
from app.gui.colormaps import lookup_table, overlay_table
from app.gui.event_presenter import EventPresenter
from app.gui.preferred_grid import PreferredGridMode
from app.gui.result_presenter import ResultPresenter
from app.gui.snapshot import save_widget_png
from app.gui.status_bar import StatusBar
from app.gui.unit_report import save_unit_report
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout, start_size

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """The live view. `show_result` is the single entry for displaying a result."""

    result_shown = pyqtSignal(int)  # how many results have been shown so far
    refreshed = pyqtSignal()  # one poll of the backend was handled (tests wait on it)
    closed = pyqtSignal()  # the window was closed (its backend is stopped by then)

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
        self.tabs = CentreTabs(backend, self.view_model, self.panes, self.results,
                               self.show_notice, self)
        self.action_set = self._build_actions()
        self.tabs.bind(self.action_set)
        self.events = EventPresenter(
            backend, self.view_model, self.panes, self.status, self.action_set,
            self.preferred_grid, self.results, self.show_notice, self.setWindowTitle,
            initial_layer or settings.view.layer or None,
            settings.view.unit if initial_unit is None else initial_unit,
        )
        self._connect_model()
        self._connect_panes()
        self.set_colormap(settings.view.colormap)

        self._timer = QTimer(self)
        self._timer.setInterval(settings.gui.refresh_ms)
        self._timer.timeout.connect(self._on_refresh)
        self._timer.start()

    # ------------------------------------------------------------------ construction

    def _build_actions(self) -> ActionSet:
        choices: list[ModelChoice] = []
        try:
            choices = self.backend.model_choices()
        except Exception as exc:  # a broken registry must not keep the window from opening
            log.exception("model_choices failed")
            self.show_notice(Notice(f"cannot list models: {exc}", NoticeLevel.ERROR))
        table = with_models(ACTIONS, choices)
        model = self.view_model
        checked = {
            f"normalization:{model.normalization}": True,
            f"colormap:{self.settings.view.colormap}": True,
            f"attribution:{AttributionMode.OFF}": True,
            f"ablation_mode:{AblationMode.ZERO}": True,
            "overlay": True,
            "mirror": self.settings.source.mirror,
        }
        bar = self.menuBar()
        assert bar is not None  # a QMainWindow makes its menu bar on first use
        actions = build_actions(self, bar, table, checked)
        self.panes.help.set_rows("Keys", help_rows(table))
        self.panes.add_export_actions(
            {name: actions[f"export:{name}"] for name, _ in EXPORTABLE_PANES})
        return actions

    def _connect_model(self) -> None:
        model = self.view_model
        model.view_changed.connect(self.backend.set_view)
        model.unit_requested.connect(self._on_unit_requested)
        model.selection_changed.connect(self._on_selection_changed)
        model.layers_changed.connect(self._on_layers_changed)
        model.frozen_changed.connect(self._on_frozen_changed)
        model.normalization_changed.connect(self._on_normalization_changed)
        model.attribution_changed.connect(self._on_attribution_changed)
        model.attribution_at_changed.connect(self._on_attribution_at_changed)
        model.ablation_changed.connect(self._update_ablation_display)
        model.ablation_mode_changed.connect(self._on_ablation_mode_changed)
        model.classes_changed.connect(self._on_classes_changed)

    def _connect_panes(self) -> None:
        p, model = self.panes, self.view_model
        p.layers.layer_chosen.connect(model.select_layer)
        p.grid.unit_hovered.connect(self._on_unit_hovered)
        p.grid.unit_clicked.connect(model.select_unit)
        p.grid.aspect_changed.connect(model.set_grid_aspect)
        p.ablation.run_requested.connect(self._on_ablation_folder)
        p.ablation.cancel_requested.connect(partial(self.cancel_job, JobKind.ABLATE))
        p.dissection.run_requested.connect(self._on_dissect_folder)
        p.dissection.cancel_requested.connect(partial(self.cancel_job, JobKind.DISSECT))
        p.dissection.unit_clicked.connect(model.select_unit)
        p.unit.position_clicked.connect(model.click_position)
        p.unit.delete_clicked.connect(self.toggle_ablation)
        p.unit.restore_requested.connect(self._on_restore_requested)
        p.unit.restore_all_requested.connect(self.restore_all)
        p.unit.ablation_mode_changed.connect(model.set_ablation_mode)
        p.unit.tab_changed.connect(self.results.update_tab)
        p.centre_tab_changed.connect(self.tabs.on_tab_changed)
        p.predictions.class_clicked.connect(self._on_class_clicked)
        p.card.patch_clicked.connect(self._on_patch_clicked)
        p.blocks.unit_clicked.connect(model.select_unit)
        p.blocks.overlay_changed.connect(self.results.set_blocks_overlay)
        p.blocks.integrated_requested.connect(self.tabs.on_integrated_requested)
        p.frame_pane.accentuate_requested.connect(self.tabs.accentuate)
        p.frame_pane.invert_requested.connect(self.tabs.invert)
        p.frame_pane.grid_requested.connect(self.tabs.activation_grid)
        p.input.crop_hovered.connect(self.results.hover_input)
        p.patches.scan_requested.connect(self._on_scan_folder)
        p.patches.patch_clicked.connect(self._on_patch_clicked)
        p.preferred.cancel_render.connect(partial(self.cancel_job, JobKind.RENDER))
        p.preferred.render_layer_requested.connect(self.start_render_layer)
        p.preferred.cancel_render_layer.connect(partial(self.cancel_job, JobKind.RENDER_LAYER))
        p.architecture_dialog.chosen.connect(self.load_model)
        self.status.cancel_requested.connect(self.cancel_job)
        self.preferred_grid.changed.connect(self.results.update_grid_marks)
        self.results.result_shown.connect(self.result_shown)
        self.results.icons_wanted.connect(self.tabs.on_icons_wanted)
        self.results.group_icons_wanted.connect(self.tabs.on_group_icons_wanted)

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
        self.show_notice(Notice(f"opening {spec}…"))
        self.backend.open_source(spec)

    def load_model(self, spec: str) -> None:
        self.events.load_model(spec, Path(spec).name or spec)

    def set_colormap(self, name: str) -> None:
        if f"colormap:{name}" in self.action_set:
            self.action_set.set_checked(f"colormap:{name}")
        lut = lookup_table(name)
        self.panes.grid.set_lut(lut)
        self.panes.unit.set_lut(lut)
        self.panes.card.set_lut(lut)
        self.panes.input.set_lut(overlay_table(name))

    def toggle_ablation(self) -> None:
        """`d`: delete the selected unit from the live network, or restore it."""
        model = self.view_model
        deleted = model.toggle_ablation()
        if deleted is None:
            return
        name = f"{model.layer}:{model.unit}"
        self.show_notice(Notice(
            f"deleted {name} ({model.ablation_mode.value})" if deleted else f"restored {name}"
        ))

    def restore_all(self) -> None:
        if self.view_model.restore_all():
            self.show_notice(Notice("restored all deleted units"))

    def start_scan(self, folder: str) -> None:
        """Scan `folder` for the top patches of every unit of the current layer."""
        layer = self.view_model.layer
        if layer is None:
            self.show_notice(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.backend.start_scan(folder, layer)
        self.show_notice(Notice(f"scanning {folder} for {layer}…"))

    def start_render_layer(self) -> None:
        """Render (and cache) the preferred image of every unit of the current layer."""
        layer = self.view_model.layer
        if layer is None:
            return
        self.backend.start_render_layer(layer)
        self.preferred_grid.on_render_started(layer)
        self.show_notice(Notice(f"rendering every unit of {layer}…"))

    def start_ablation(self, folder: str) -> None:
        """Ablation curves and class selectivity of the current layer on `folder`."""
        layer = self.view_model.layer
        if layer is None:
            self.show_notice(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.backend.start_ablation(folder, layer)
        self.panes.show_ablation()
        self.show_notice(Notice(f"ablation curves of {layer} on {folder}…"))

    def start_class_units(self, folder: str) -> None:
        """Which units of the current layer the explained class (else the top-1) needs."""
        layer, r = self.view_model.layer, self.results.last_result
        cls = self.view_model.explained_class
        if cls is None and r is not None and r.predictions:
            cls = r.predictions[0].index
        if layer is None or cls is None:
            self.show_notice(Notice("no prediction yet to pick a class from",
                                    NoticeLevel.WARNING))
            return
        self.backend.start_class_units(folder, layer, cls)
        self.panes.show_ablation()
        name = self.view_model.unit_name(LOGITS, cls) or f"class {cls}"
        self.show_notice(Notice(f"units of {layer} that {name!r} needs, on {folder}…"))

    def start_dissection(self, folder: str) -> None:
        """Concept labels of the current layer's units, on `folder`."""
        layer = self.view_model.layer
        if layer is None:
            self.show_notice(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.backend.start_dissection(folder, layer)
        self.panes.show_dissection()
        self.show_notice(Notice(f"dissecting {layer} on {folder}…"))

    def cancel_job(self, kind: JobKind) -> None:
        self.backend.cancel_job(kind)

    def toggle_help(self) -> None:
        self.panes.help.toggle()

    def save_screenshot(self, path: str | Path) -> Path:
        """Grab the window to a PNG (atomically); raises OSError."""
        return save_widget_png(self, path)

    def export_pane(self, name: str, path: str | Path) -> Path:
        """One pane (actions.EXPORTABLE_PANES) as a PNG, atomically; raises OSError. A centre
        tab is shown first: it is what the user asked to save."""
        self.panes.reveal(name)
        return save_widget_png(self.panes.exportable(name), path)

    def save_unit_report(self, path: str | Path) -> tuple[Path, Path]:
        """The unit card as `path` (PNG) and the same name .html; raises OSError."""
        model = self.view_model
        return save_unit_report(self.panes.card, self.events.model_name or "model",
                                model.channels(), path)

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

    def _on_unit_requested(self, layer: str, unit: int) -> None:
        """A new selection: clear the old unit's analyses and ask for this one's."""
        p = self.panes
        p.patches.set_loading(layer, unit)
        p.preferred.set_waiting(layer, unit)
        p.ablation.set_unit(layer, unit)
        p.card.set_unit(layer, unit, self.view_model.unit_name(layer, unit))
        self._update_ablation_display()
        self.backend.request_unit(layer, unit)
        if p.showing_card():
            self.backend.request_unit_card(layer, unit)

    # ------------------------------------------------------------------ view model changes

    def _on_layers_changed(self) -> None:
        self.panes.layers.set_layers(self.view_model.layers)

    def _on_selection_changed(self) -> None:
        layer = self.view_model.layer
        self.panes.layers.set_current(layer)
        self.results.update_selection()
        if layer is not None and layer != self.events.concepts_layer():
            self.backend.request_layer_concepts(layer)  # the labels of the layer now shown

    def _on_frozen_changed(self, frozen: bool) -> None:
        self.action_set.set_checked("freeze", frozen)
        if not frozen:  # a new frame: the integrated values were of the old one
            self.panes.blocks.set_integrated(None)

    def _on_normalization_changed(self, normalization: Normalization) -> None:
        self.action_set.set_checked(f"normalization:{normalization}")

    def _on_attribution_changed(self, mode: AttributionMode) -> None:
        self.action_set.set_checked(f"attribution:{mode}")
        self.results.update_attribution_mode()
        self.show_notice(Notice(f"attribution: {MODE_TEXT[mode]}"))

    def _on_attribution_at_changed(self, _position: object) -> None:
        self.results.update_position()

    def _on_ablation_mode_changed(self, mode: AblationMode) -> None:
        self.action_set.set_checked(f"ablation_mode:{mode}")
        self.panes.unit.set_ablation_mode(mode)

    def _update_ablation_display(self) -> None:
        model = self.view_model
        rows = model.ablated_rows()
        self.panes.unit.set_deleted(rows, model.is_ablated(model.layer, model.unit))
        self.panes.grid.set_ablated(model.ablated_units(self.results.shown_layer()))
        self.action_set["restore_all"].setEnabled(bool(rows))

    # ------------------------------------------------------------------ input handlers

    def _on_class_clicked(self, index: int, versus: bool) -> None:
        if versus:
            self.view_model.pick_versus(index)
        else:
            self.view_model.pick_class(index)

    def _on_classes_changed(self) -> None:
        model = self.view_model
        self.panes.predictions.set_marked(model.explained_class, model.versus_class)

    def _on_unit_hovered(self, _unit: object) -> None:
        self.results.update_hover()

    def _on_step_source(self, delta: int) -> None:
        self.backend.step_source(delta)

    def _on_overlay_toggled(self, enabled: bool) -> None:
        self.panes.input.set_overlay_enabled(enabled)

    def _on_mirror_toggled(self, mirror: bool) -> None:
        self.backend.set_mirror(mirror)

    def _on_preferred_grid_toggled(self, enabled: bool) -> None:
        self.preferred_grid.set_enabled(
            enabled, self.results.shown_layer(), self.results.last_result
        )

    def _on_escape(self) -> None:
        if self.panes.help.isVisible():
            self.panes.help.hide()
        else:
            self.view_model.set_attribution_at(None)

    def _on_restore_requested(self, units: object) -> None:
        assert isinstance(units, list)
        self.view_model.restore_units(units)

    def _on_patch_clicked(self, patch: object) -> None:
        assert isinstance(patch, Patch)
        self.panes.patch_dialog.show_patch(patch)

    def _on_scan_folder(self) -> None:
        folder = file_dialogs.ask_scan_folder(self)
        if folder:
            self.start_scan(folder)

    def _on_class_units_folder(self) -> None:
        folder = file_dialogs.ask_ablation_folder(self)
        if folder:
            self.start_class_units(folder)

    def _on_dissect_folder(self) -> None:
        folder = file_dialogs.ask_dissection_folder(self)
        if folder:
            self.start_dissection(folder)

    def _on_attention_toggled(self, on: bool) -> None:
        self.view_model.set_attention(on)
        if on:
            self.show_notice(Notice("attention: the token under the mouse on the input (else "
                                    "the class token), at the shown layer's block"))

    def _on_concept_labels_toggled(self, on: bool) -> None:
        self.events.show_tile_labels(on)

    def _on_ablation_folder(self) -> None:
        folder = file_dialogs.ask_ablation_folder(self)
        if folder:
            self.start_ablation(folder)

    def _on_open_dialog(self, kind: str) -> None:
        path = file_dialogs.ask_source(self, kind)
        if path:
            self.open_source(path)

    def _on_open_checkpoint(self) -> None:
        """A .pt2 program loads as it is; a state_dict needs its architecture named first."""
        path = file_dialogs.ask_checkpoint(self)
        if not path:
            return
        if file_dialogs.is_program(path):
            self.load_model(path)
            return
        try:
            names = self.backend.architectures()
        except Exception as exc:  # a broken registry must not take the window down
            log.exception("architectures failed")
            self.show_notice(Notice(f"cannot list architectures: {exc}", NoticeLevel.ERROR))
            return
        self.panes.architecture_dialog.ask(path, names)

    def _on_export_pane(self, name: str) -> None:
        path = file_dialogs.ask_png_path(self, f"Save the {name} pane", f"deepvis-{name}.png")
        if not path:
            return
        try:
            saved = self.export_pane(name, path)
        except OSError as exc:
            self.show_notice(Notice(str(exc), NoticeLevel.ERROR))
        else:
            self.show_notice(Notice(f"saved {saved}"))

    def _on_save_unit_report(self) -> None:
        """Ctrl+R: the card is shown first (it is what is saved), then a name is asked."""
        model = self.view_model
        if model.layer is None:
            self.show_notice(Notice("no unit to report on yet", NoticeLevel.WARNING))
            return
        self.tabs.toggle_unit_card(True)
        path = file_dialogs.ask_png_path(
            self, "Save unit report (PNG, and an HTML page beside it)",
            f"deepvis-{model.layer}-unit{model.unit}.png")
        if not path:
            return
        try:
            png, page = self.save_unit_report(path)
        except OSError as exc:
            self.show_notice(Notice(str(exc), NoticeLevel.ERROR))
        else:
            self.show_notice(Notice(f"saved {png} and {page.name}"))

    def _on_save_screenshot(self) -> None:
        path = file_dialogs.ask_screenshot_path(self)
        if not path:
            return
        try:
            saved = self.save_screenshot(path)
        except OSError as exc:
            self.show_notice(Notice(str(exc), NoticeLevel.ERROR))
        else:
            self.show_notice(Notice(f"saved {saved}"))

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
