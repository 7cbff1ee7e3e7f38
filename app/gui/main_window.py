"""The main window: polls the backend on a timer, shows the newest result, turns input into views.

Nothing here computes more than slicing small arrays: the backend's threads do the work and
the window only ever polls, so it stays responsive while a model loads or a source fails.

Layout: input, predictions and messages on the left; the activation grid (and the ablation
plots, a second tab) in the middle; layers and the selected unit's tabs (Unit, Top patches,
Preferred, Attribution) on the right; background jobs in the status bar.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PyQt6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QPlainTextEdit,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.backend import Event, LiveBackend
from app.core.messages import (
    AblationCurves,
    AblationMode,
    AttributionMode,
    JobFinished,
    JobKind,
    JobProgress,
    LayerInfo,
    ModelReady,
    Normalization,
    Notice,
    NoticeLevel,
    Patch,
    PreferredGrid,
    PreferredImage,
    Result,
    SourceReady,
    UnitPatches,
    ViewState,
)
from app.core.settings import Settings
from app.core.tiling import GridGeometry, normalize_channels
from app.gui import theme
from app.gui.ablation_view import AblationPane
from app.gui.attribution_view import MODE_TEXT, AttributionPane, attribution_status
from app.gui.colormaps import COLORMAP_NAMES, lookup_table, overlay_table
from app.gui.grid_view import ActivationGrid
from app.gui.help_overlay import HelpOverlay
from app.gui.image_pane import Panel
from app.gui.input_view import InputView
from app.gui.jobs_view import JOB_NAMES, JobWidget
from app.gui.patches_view import PatchDialog, TopPatchesPane
from app.gui.predictions_view import PredictionsView
from app.gui.preferred_view import PreferredPane
from app.gui.snapshot import save_widget_png
from app.gui.unit_pane import UnitPane

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt *.bin);;All files (*)"
STATUS_INTERVAL_S = 0.25  # numbers that change every frame are unreadable faster than this
GRID_REFRESH_S = 3.0  # the preferred-images grid follows a whole-layer render this often
NOTICE_SECONDS = {NoticeLevel.INFO: 4.0, NoticeLevel.WARNING: 8.0, NoticeLevel.ERROR: 10.0}
NOTICE_COLORS = {
    NoticeLevel.INFO: theme.TEXT,
    NoticeLevel.WARNING: theme.WARNING,
    NoticeLevel.ERROR: theme.ERROR,
}
ATTRIBUTION_CYCLE = (
    AttributionMode.OFF, AttributionMode.GRADIENT, AttributionMode.DECONVNET,
    AttributionMode.GUIDED,
)
# the right column's tabs, in order; the Unit tab is the unit pane's own first tab
UNIT_TAB, PATCHES_TAB, PREFERRED_TAB, ATTRIBUTION_TAB = range(4)
_KEY_NAMES = {
    "Right": "→", "Left": "←", "Up": "↑", "Down": "↓", "PgDown": "PgDn", "PgUp": "PgUp",
    "Esc": "Esc",
}


def layer_row_text(info: LayerInfo) -> str:
    """`_blocks.5._depthwise_conv  240×28×28`: the list row for a layer."""
    return f"{info.name}  {'×'.join(str(s) for s in info.shape)}"


def _keys_text(action: QAction) -> str:
    names = []
    for seq in action.shortcuts():
        text = seq.toString(QKeySequence.SequenceFormat.PortableText)
        names.append(_KEY_NAMES.get(text, text))
    return " / ".join(names)


class MainWindow(QMainWindow):
    """The live view. `show_result` is the single entry for displaying a result."""

    result_shown = pyqtSignal(int)  # how many results have been shown so far
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
        self.results_shown = 0
        self.last_result: Result | None = None
        self.layers: tuple[LayerInfo, ...] = ()
        self.layer: str | None = None
        self.unit = 0
        self.normalization = Normalization(settings.view.normalization)
        self.frozen = False
        self.colormap = settings.view.colormap
        self.model_name = ""
        self.source_label = ""
        self.notices: deque[tuple[str, Notice]] = deque(maxlen=200)
        self._initial_layer = initial_layer or settings.view.layer or None
        self._initial_unit = settings.view.unit if initial_unit is None else initial_unit
        self._stopped = False
        self._last_status = 0.0
        self._shown_key: tuple[str, int, bool] | None = None
        self._frame_shape: tuple[int, ...] | None = None
        self.attribution = AttributionMode.OFF
        self.attribution_at: tuple[int, int] | None = None
        self.ablated: dict[str, set[int]] = {}  # layer → deleted units
        self.ablation_mode = AblationMode.ZERO
        self.jobs: dict[JobKind, JobWidget] = {}
        self._requested: tuple[str, int] | None = None  # last request_unit sent

        self.setWindowTitle("DeepVis Live")
        self.setObjectName("mainWindow")
        self.setStyleSheet(theme.STYLE_SHEET)
        self.setAcceptDrops(True)
        self.resize(settings.gui.width, settings.gui.height)
        self._build_panes()
        self._build_status_bar()
        self._build_menus()
        self._apply_colormap(self.colormap)

        self.timer = QTimer(self)
        self.timer.setInterval(settings.gui.refresh_ms)
        self.timer.timeout.connect(self._on_refresh)
        self.timer.start()

    # ------------------------------------------------------------------ construction

    def _build_panes(self) -> None:
        central = QWidget()
        central.setObjectName("central")
        outer = QVBoxLayout(central)
        outer.setContentsMargins(8, 8, 8, 8)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setHandleWidth(8)
        splitter.setChildrenCollapsible(False)
        outer.addWidget(splitter)

        left = QSplitter(Qt.Orientation.Vertical)
        left.setHandleWidth(8)
        self.input_view = InputView(self.settings.view.overlay_opacity)
        predictions_panel = Panel("Top-5 predictions")
        self.predictions = PredictionsView()
        predictions_panel.layout_.addWidget(self.predictions)
        predictions_panel.setSizePolicy(
            predictions_panel.sizePolicy().horizontalPolicy(),
            self.predictions.sizePolicy().verticalPolicy(),
        )
        log_panel = Panel("Messages")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(200)
        self.log_view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.log_view.setAcceptDrops(False)  # a dropped file opens as a source, not as text
        self.log_view.setPlaceholderText("Model, source and error messages appear here.")
        log_panel.layout_.addWidget(self.log_view)
        left.addWidget(self.input_view)
        left.addWidget(predictions_panel)
        left.addWidget(log_panel)
        for index, stretch in enumerate((1, 0, 0)):
            left.setStretchFactor(index, stretch)
        self.left_column = left

        self.grid = ActivationGrid()
        self.grid.unit_hovered.connect(self._on_unit_hovered)
        self.grid.unit_clicked.connect(self._on_unit_clicked)
        self.grid.aspect_changed.connect(self._on_grid_aspect_changed)
        self.ablation_pane = AblationPane()
        self.ablation_pane.run_requested.connect(self._on_ablation_folder)
        self.ablation_pane.cancel_requested.connect(lambda: self.cancel_job(JobKind.ABLATE))
        self.center_tabs = QTabWidget()
        self.center_tabs.setDocumentMode(True)
        self.center_tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.center_tabs.addTab(self.grid, "Activations")
        self.center_tabs.addTab(self.ablation_pane, "Ablation")

        right = QSplitter(Qt.Orientation.Vertical)
        right.setHandleWidth(8)
        layers_panel = Panel("Layers")
        self.layer_list = QListWidget()
        self.layer_list.setUniformItemSizes(True)
        self.layer_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.layer_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.layer_list.currentRowChanged.connect(self._on_layer_row_changed)
        self._layer_placeholder = QListWidgetItem("Loading model…")
        self._layer_placeholder.setFlags(Qt.ItemFlag.NoItemFlags)
        self.layer_list.addItem(self._layer_placeholder)
        layers_panel.layout_.addWidget(self.layer_list)
        self.unit_pane = UnitPane()
        self.unit_pane.position_clicked.connect(self._on_unit_position_clicked)
        self.unit_pane.delete_clicked.connect(self.toggle_ablation)
        self.unit_pane.restore_requested.connect(self._on_restore_requested)
        self.unit_pane.restore_all_requested.connect(self.restore_all)
        self.unit_pane.ablation_mode_changed.connect(self.set_ablation_mode)
        self.patches_view = TopPatchesPane()
        self.patches_view.scan_requested.connect(self._on_scan_folder)
        self.patches_view.patch_clicked.connect(self._on_patch_clicked)
        self.preferred_view = PreferredPane()
        self.preferred_view.cancel_render.connect(lambda: self.cancel_job(JobKind.RENDER))
        self.preferred_view.render_layer_requested.connect(self.start_render_layer)
        self.preferred_view.cancel_render_layer.connect(
            lambda: self.cancel_job(JobKind.RENDER_LAYER)
        )
        self.attribution_view = AttributionPane()
        tabs = self.unit_pane.tabs
        tabs.addTab(self.patches_view, "Top patches")
        tabs.addTab(self.preferred_view, "Preferred")
        tabs.addTab(self.attribution_view, "Attribution")
        tabs.currentChanged.connect(self._on_unit_tab_changed)
        self.patch_dialog = PatchDialog(self)
        self._preferred_grid: PreferredGrid | None = None  # shown in the grid while G is on
        self._preferred_grid_pending: str | None = None  # layer of the request in flight
        self._render_layer_name = ""  # the layer "render whole layer" is working on
        self._preferred_grid_asked = 0.0  # monotonic time of the last refresh request
        right.addWidget(layers_panel)
        right.addWidget(self.unit_pane)

        splitter.addWidget(left)
        splitter.addWidget(self.center_tabs)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        side = max(300, int(self.settings.gui.width * 0.24))
        splitter.setSizes([side, self.settings.gui.width - 2 * side, side])
        left_h = self.settings.gui.height
        self._predictions_h = predictions_panel.sizeHint().height()
        left.setSizes([left_h - self._predictions_h - 120, self._predictions_h, 120])
        right.setSizes([left_h * 3 // 10, left_h * 7 // 10])
        self.setCentralWidget(central)
        self.help_overlay = HelpOverlay(central)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        assert bar is not None
        bar.setSizeGripEnabled(False)
        self.notice_label = QLabel("")
        self.notice_label.setTextFormat(Qt.TextFormat.PlainText)
        self.stats_label = QLabel("waiting for frames")
        self.model_label = QLabel("loading model")
        self.source_status = QLabel("")
        self.frozen_label = QLabel("FROZEN")
        self.frozen_label.setStyleSheet(
            f"color: {theme.BACKGROUND}; background: {theme.FROZEN}; font-weight: 700;"
            " border-radius: 3px; padding: 0px 6px;"
        )
        self.frozen_label.hide()
        self.attribution_label = QLabel("")
        self.attribution_label.setToolTip("Attribution mode of the selected unit and its cost "
                                          "on the inference worker (b cycles the modes)")
        self.attribution_label.hide()
        self.jobs_box = QWidget()
        self.jobs_layout = QHBoxLayout(self.jobs_box)
        self.jobs_layout.setContentsMargins(0, 0, 0, 0)
        self.jobs_layout.setSpacing(8)
        bar.addWidget(self.notice_label, 1)
        for label in (
            self.jobs_box, self.frozen_label, self.attribution_label, self.stats_label,
            self.model_label, self.source_status,
        ):
            bar.addPermanentWidget(label)
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.timeout.connect(self._on_notice_expired)

    def _add_action(
        self,
        menu: QMenu,
        text: str,
        slot: Callable[[], None],
        keys: tuple[str | QKeySequence.StandardKey, ...] = (),
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, self)
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
            # shortcuts fire whichever child has focus, the layer list included
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(lambda _checked: slot())
        else:
            action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        assert bar is not None
        file_menu = bar.addMenu("&File")
        assert file_menu is not None
        self.file_actions = [
            self._add_action(file_menu, "Open image…", self._on_open_image, ("Ctrl+O",)),
            self._add_action(file_menu, "Open folder…", self._on_open_folder, ("Ctrl+Shift+O",)),
            self._add_action(file_menu, "Open video…", self._on_open_video),
        ]
        camera_menu = file_menu.addMenu("Open camera")
        assert camera_menu is not None
        for index in range(4):
            self._add_action(
                camera_menu, f"Camera {index}", lambda i=index: self._open_source(f"camera:{i}")
            )
        file_menu.addSeparator()
        self.save_action = self._add_action(
            file_menu, "Save screenshot…", self._on_save_screenshot, ("Ctrl+S",)
        )
        file_menu.addSeparator()
        self.quit_action = self._add_action(file_menu, "Quit", self._on_quit, ("Ctrl+Q",))

        model_menu = bar.addMenu("&Model")
        assert model_menu is not None
        self.model_actions: dict[str, QAction] = {}
        model_group = QActionGroup(self)
        try:
            choices = self.backend.model_choices()
        except Exception as exc:  # a broken registry must not keep the window from opening
            log.exception("model_choices failed")
            choices = []
            self.show_notice(Notice(f"cannot list models: {exc}", NoticeLevel.ERROR))
        for choice in choices:
            suffix = "offline" if choice.offline else "needs download"
            action = QAction(f"{choice.name}  ({suffix})", self)
            action.setToolTip(choice.description)
            action.setStatusTip(choice.description)
            action.setCheckable(True)
            action.setActionGroup(model_group)
            action.triggered.connect(lambda _c=False, n=choice.name: self._load_model(n))
            model_menu.addAction(action)
            self.model_actions[choice.name] = action
        model_menu.setToolTipsVisible(True)
        model_menu.addSeparator()
        self._add_action(model_menu, "Open checkpoint…", self._on_open_checkpoint)

        view_menu = bar.addMenu("&View")
        assert view_menu is not None
        norm_menu = view_menu.addMenu("Normalization")
        assert norm_menu is not None
        norm_group = QActionGroup(self)
        self.normalization_actions: dict[Normalization, QAction] = {}
        for norm, text in (
            (Normalization.PER_CHANNEL, "Per channel"),
            (Normalization.PER_LAYER, "Per layer"),
        ):
            action = QAction(text, self, checkable=True)
            action.setActionGroup(norm_group)
            action.setChecked(norm == self.normalization)
            action.triggered.connect(lambda _c=False, n=norm: self.set_normalization(n))
            norm_menu.addAction(action)
            self.normalization_actions[norm] = action
        cmap_menu = view_menu.addMenu("Colormap")
        assert cmap_menu is not None
        cmap_group = QActionGroup(self)
        self.colormap_actions: dict[str, QAction] = {}
        for name in COLORMAP_NAMES:
            action = QAction(name, self, checkable=True)
            action.setActionGroup(cmap_group)
            action.setChecked(name == self.colormap)
            action.triggered.connect(lambda _c=False, n=name: self.set_colormap(n))
            cmap_menu.addAction(action)
            self.colormap_actions[name] = action
        view_menu.addSeparator()
        self.overlay_action = QAction("Unit overlay on input", self, checkable=True)
        self.overlay_action.setChecked(True)
        self.overlay_action.toggled.connect(self._on_overlay_toggled)
        view_menu.addAction(self.overlay_action)
        self.preferred_grid_action = self._add_action(
            view_menu, "Preferred images in the grid", self._on_preferred_grid_toggled, ("G",),
            checkable=True,
        )
        self.mirror_action = QAction("Mirror camera", self, checkable=True)
        self.mirror_action.setChecked(self.settings.source.mirror)
        self.mirror_action.toggled.connect(self._on_mirror_toggled)
        view_menu.addAction(self.mirror_action)

        nav = bar.addMenu("&Navigate")
        assert nav is not None
        self.nav_actions = [
            self._add_action(nav, "Previous unit", lambda: self.move_unit(0, -1), ("Left",)),
            self._add_action(nav, "Next unit", lambda: self.move_unit(0, 1), ("Right",)),
            self._add_action(nav, "Unit one row up", lambda: self.move_unit(-1, 0), ("Up",)),
            self._add_action(nav, "Unit one row down", lambda: self.move_unit(1, 0), ("Down",)),
            self._add_action(nav, "Previous layer", lambda: self.step_layer(-1), ("PgUp", "U")),
            self._add_action(nav, "Next layer", lambda: self.step_layer(1), ("PgDown", "O")),
        ]
        self.freeze_action = QAction("Freeze frame", self, checkable=True)
        self.freeze_action.setShortcut(QKeySequence("F"))
        self.freeze_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.freeze_action.toggled.connect(self._on_freeze_toggled)
        nav.addAction(self.freeze_action)
        nav.addSeparator()
        self.nav_actions += [
            self.freeze_action,
            self._add_action(nav, "Next image in folder", lambda: self._step_source(1), ("N",)),
            self._add_action(
                nav, "Previous image in folder", lambda: self._step_source(-1), ("P",)
            ),
        ]

        self._build_analysis_menu()

        help_menu = bar.addMenu("&Help")
        assert help_menu is not None
        self.help_action = self._add_action(help_menu, "Keys", self.toggle_help, ("H",))
        # Esc is not in a menu: it only closes the card, so it lives on the window itself
        self.escape_action = QAction("Close help", self)
        self.escape_action.setShortcut(QKeySequence("Esc"))
        self.escape_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.escape_action.triggered.connect(self._on_escape)
        self.addAction(self.escape_action)

        rows = [(_keys_text(a), a.text()) for a in self.nav_actions]
        rows += [(_keys_text(a), a.text()) for a in self.analysis_key_actions]
        rows.append((_keys_text(self.preferred_grid_action),
                     "Grid shows each unit's preferred image / its activations"))
        rows.append((_keys_text(self.help_action), "Show / hide this help"))
        rows.append(("Esc", "Close this help; else attribute the unit's maximum again"))
        rows += [(_keys_text(a), a.text().rstrip("…")) for a in self.file_actions[:2]]
        rows.append((_keys_text(self.save_action), "Save a screenshot of the window"))
        rows.append((_keys_text(self.quit_action), "Quit"))
        rows.append(("click", "Select the unit under the mouse"))
        rows.append(("click map", "In the Unit tab: attribute that position (again: its max)"))
        rows.append(("drop", "Drop an image, video or folder on the window to open it"))
        self.help_overlay.set_rows("Keys", rows)

    def _build_analysis_menu(self) -> None:
        bar = self.menuBar()
        assert bar is not None
        menu = bar.addMenu("&Analysis")
        assert menu is not None
        self.attribution_cycle_action = self._add_action(
            menu, "Cycle attribution mode", self.cycle_attribution, ("B",)
        )
        attribution_menu = menu.addMenu("Attribution")
        assert attribution_menu is not None
        group = QActionGroup(self)
        self.attribution_actions: dict[AttributionMode, QAction] = {}
        for mode in ATTRIBUTION_CYCLE:
            action = QAction(MODE_TEXT[mode].capitalize(), self, checkable=True)
            action.setActionGroup(group)
            action.setChecked(mode == self.attribution)
            action.triggered.connect(lambda _c=False, m=mode: self.set_attribution(m))
            attribution_menu.addAction(action)
            self.attribution_actions[mode] = action
        menu.addSeparator()
        self.delete_action = self._add_action(
            menu, "Delete / restore selected unit", self.toggle_ablation, ("D",)
        )
        self.restore_all_action = self._add_action(
            menu, "Restore all deleted units", self.restore_all
        )
        mode_menu = menu.addMenu("Deleted units output")
        assert mode_menu is not None
        mode_group = QActionGroup(self)
        self.ablation_mode_actions: dict[AblationMode, QAction] = {}
        for mode, text in ((AblationMode.ZERO, "Zero"), (AblationMode.MEAN, "Running mean")):
            action = QAction(text, self, checkable=True)
            action.setActionGroup(mode_group)
            action.setChecked(mode == self.ablation_mode)
            action.triggered.connect(lambda _c=False, m=mode: self.set_ablation_mode(m))
            mode_menu.addAction(action)
            self.ablation_mode_actions[mode] = action
        menu.addSeparator()
        self.scan_action = self._add_action(
            menu, "Scan folder for top patches…", self._on_scan_folder
        )
        self.render_layer_action = self._add_action(
            menu, "Render preferred images of this layer", self.start_render_layer
        )
        self.ablation_action = self._add_action(
            menu, "Ablation curves on a folder…", self._on_ablation_folder
        )
        menu.addSeparator()
        self.cancel_actions: dict[JobKind, QAction] = {}
        for kind in (JobKind.SCAN, JobKind.RENDER_LAYER, JobKind.ABLATE, JobKind.RENDER):
            action = self._add_action(
                menu, f"Cancel {JOB_NAMES[kind]}", lambda k=kind: self.cancel_job(k)
            )
            action.setEnabled(False)
            self.cancel_actions[kind] = action
        self.analysis_key_actions = [self.attribution_cycle_action, self.delete_action]

    # ------------------------------------------------------------------ public API

    def view_state(self) -> ViewState:
        """What the window asks the backend to show."""
        return ViewState(
            layer=self.layer, unit=self.unit, normalization=self.normalization,
            frozen=self.frozen, grid_aspect=self.grid.aspect(),
            attribution=self.attribution, attribution_at=self.attribution_at,
            ablated=self.ablated_state(), ablation_mode=self.ablation_mode,
        )

    def ablated_state(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The deleted units as the view sends them, layers and units sorted."""
        return tuple(
            (layer, tuple(sorted(units))) for layer, units in sorted(self.ablated.items()) if units
        )

    def show_result(self, result: Result) -> None:
        """Display one result: one setImage per pane, text at most every STATUS_INTERVAL_S."""
        self.last_result = result
        if not self.preferred_grid_action.isChecked():
            self.grid.set_mosaic(result.mosaic, result.geometry)
        elif self._preferred_grid is None or self._preferred_grid.layer != result.layer:
            self._request_preferred_grid(result.layer)
        self.input_view.set_frame(result.frame.image, result.crop)
        if result.frame.image.shape != self._frame_shape:
            self._frame_shape = result.frame.image.shape
            self._fit_input_height()
        same_layer = self.layer is None or result.layer == self.layer
        unit = self.unit if same_layer else result.unit
        heat = self._unit_heat(result, unit)
        self.input_view.set_overlay(heat, result.crop)
        tab = self.unit_pane.tabs.currentIndex()
        if tab == UNIT_TAB:
            self.unit_pane.set_map(heat)
        attribution = result.attribution if self.attribution != AttributionMode.OFF else None
        self.input_view.set_attribution(attribution, result.crop)
        if attribution is not None and tab == ATTRIBUTION_TAB:
            self.attribution_view.set_map(attribution)
        self.predictions.set_predictions(result.predictions, result.intact_predictions)
        self.patches_view.set_live(result.live_top)  # O(1) unless the patches changed

        key = (result.layer, unit, result.frozen)
        now = time.monotonic()
        if key != self._shown_key or now - self._last_status >= STATUS_INTERVAL_S:
            # the outline and titles only move when the selection does; numbers throttled
            if key[:2] != (self._shown_key or ("", -1))[:2]:
                self.grid.set_selected(unit if same_layer else None)
                self.grid.set_ablated(tuple(self.ablated.get(result.layer, ())))
                self.unit_pane.set_title(result.layer, unit)
            self._update_grid_title(result)
            self._shown_key = key
            self._last_status = now
            self._update_status(result)
            self._update_unit_values(result, unit)
            self._update_hover_label()
            self._update_attribution_status(result)
        self.results_shown += 1
        self.result_shown.emit(self.results_shown)

    def handle_event(self, event: Event) -> None:
        """React to one backend event."""
        if isinstance(event, Notice):
            self.show_notice(event)
        elif isinstance(event, ModelReady):
            self._on_model_ready(event)
        elif isinstance(event, SourceReady):
            self._on_source_ready(event)
        elif isinstance(event, UnitPatches):
            self._on_unit_patches(event)
        elif isinstance(event, PreferredImage):
            self._on_preferred_image(event)
        elif isinstance(event, PreferredGrid):
            self._on_preferred_grid(event)
        elif isinstance(event, JobProgress):
            self._on_job_progress(event)
        elif isinstance(event, JobFinished):
            self._on_job_finished(event)
        elif isinstance(event, AblationCurves):
            self.ablation_pane.set_curves(event)

    def show_notice(self, notice: Notice) -> None:
        """Put a message in the status bar for a few seconds and in the log."""
        self.notices.append((time.strftime("%H:%M:%S"), notice))
        color = NOTICE_COLORS.get(notice.level, theme.TEXT)
        weight = "600" if notice.level == NoticeLevel.ERROR else "400"
        self.notice_label.setStyleSheet(f"color: {color}; font-weight: {weight};")
        self.notice_label.setText(notice.text)
        self.notice_label.setToolTip(
            "\n".join(f"{t}  {n.level.value}: {n.text}" for t, n in list(self.notices)[-12:])
        )
        self._notice_timer.start(int(NOTICE_SECONDS.get(notice.level, 4.0) * 1000))
        self.log_view.appendPlainText(f"{self.notices[-1][0]}  {notice.text}")

    def select_layer(self, name: str) -> bool:
        """Select a layer by name through the list, as a click would; False if unknown."""
        for row, info in enumerate(self.layers):
            if info.name == name:
                self.layer_list.setCurrentRow(row)
                return True
        return False

    def step_layer(self, delta: int) -> None:
        if not self.layers:
            return
        row = self.layer_list.currentRow()
        self.layer_list.setCurrentRow(min(max(row + delta, 0), len(self.layers) - 1))

    def select_unit(self, unit: int) -> None:
        """Select `unit` of the current layer (clamped) and tell the backend."""
        channels = self._channels()
        if channels:
            unit = min(max(unit, 0), channels - 1)
        if unit == self.unit:
            return
        self.unit = unit
        self._send_view()
        self._update_selection_display()

    def move_unit(self, drow: int, dcol: int) -> None:
        """Arrow keys: ±1 unit, or one grid row, using the geometry on screen."""
        geometry = self._shown_geometry()
        if geometry is not None:
            self.select_unit(geometry.neighbour(self.unit, drow, dcol))
        elif dcol:
            # no grid of this layer yet: a row has no meaning, a neighbour still does
            self.select_unit(self.unit + dcol)

    def set_frozen(self, frozen: bool) -> None:
        if frozen != self.freeze_action.isChecked():
            self.freeze_action.setChecked(frozen)  # its toggled handler sends the view
        elif frozen != self.frozen:
            self.frozen = frozen
            self._send_view()

    def set_normalization(self, normalization: Normalization) -> None:
        self.normalization_actions[normalization].setChecked(True)
        if normalization != self.normalization:
            self.normalization = normalization
            self._send_view()

    def set_colormap(self, name: str) -> None:
        if name in self.colormap_actions:
            self.colormap_actions[name].setChecked(True)
        self._apply_colormap(name)

    def set_overlay_enabled(self, enabled: bool) -> None:
        self.overlay_action.setChecked(enabled)

    def set_attribution(self, mode: AttributionMode) -> None:
        """Attribute the selected unit to the input with `mode` (OFF: stop computing it)."""
        self.attribution_actions[mode].setChecked(True)
        if mode == self.attribution:
            return
        self.attribution = mode
        self._send_view()
        if mode == AttributionMode.OFF:
            self.attribution_label.hide()
            self.input_view.set_attribution(None, (0, 0, 0, 0))
            self.attribution_view.set_off(
                "Attribution is off · press b to cycle gradient → deconvnet → guided backprop"
            )
        else:
            self.attribution_view.pane.set_placeholder(f"Computing {MODE_TEXT[mode]}…")
            self.attribution_label.setText(f"{MODE_TEXT[mode]} …")
            self.attribution_label.show()
        self.show_notice(Notice(f"attribution: {MODE_TEXT[mode]}"))

    def cycle_attribution(self) -> None:
        """`b`: off → gradient → deconvnet → guided → off."""
        i = ATTRIBUTION_CYCLE.index(self.attribution)
        self.set_attribution(ATTRIBUTION_CYCLE[(i + 1) % len(ATTRIBUTION_CYCLE)])

    def set_attribution_at(self, position: tuple[int, int] | None) -> None:
        """Attribute this (y, x) of the unit's map; None: its maximum."""
        if position == self.attribution_at:
            return
        self.attribution_at = position
        self.unit_pane.set_position(position)
        self._send_view()
        if self.last_result is not None:
            self._update_unit_values(self.last_result, self.unit)

    def is_ablated(self, layer: str | None, unit: int) -> bool:
        return layer is not None and unit in self.ablated.get(layer, ())

    def toggle_ablation(self) -> None:
        """`d`: delete the selected unit from the live network, or restore it."""
        if self.layer is None:
            return
        units = self.ablated.setdefault(self.layer, set())
        if self.unit in units:
            units.discard(self.unit)
            text = f"restored {self.layer}:{self.unit}"
        else:
            units.add(self.unit)
            text = f"deleted {self.layer}:{self.unit} ({self.ablation_mode.value})"
        self._ablation_changed()
        self.show_notice(Notice(text))

    def restore_units(self, units: list[tuple[str, int]]) -> None:
        for layer, unit in units:
            self.ablated.get(layer, set()).discard(unit)
        self._ablation_changed()

    def restore_all(self) -> None:
        if any(self.ablated.values()):
            self.ablated.clear()
            self._ablation_changed()
            self.show_notice(Notice("restored all deleted units"))

    def set_ablation_mode(self, mode: AblationMode) -> None:
        """What a deleted unit outputs: zero, or its running mean."""
        self.ablation_mode_actions[mode].setChecked(True)
        self.unit_pane.set_ablation_mode(mode)
        if mode != self.ablation_mode:
            self.ablation_mode = mode
            self._send_view()

    def start_scan(self, folder: str) -> None:
        """Scan `folder` for the top patches of every unit of the current layer."""
        if self.layer is None:
            self.show_notice(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.backend.start_scan(folder, self.layer)
        self.show_notice(Notice(f"scanning {folder} for {self.layer}…"))

    def start_render_layer(self) -> None:
        """Render (and cache) the preferred image of every unit of the current layer."""
        if self.layer is None:
            return
        self.backend.start_render_layer(self.layer)
        self._render_layer_name = self.layer
        self.show_notice(Notice(f"rendering every unit of {self.layer}…"))

    def start_ablation(self, folder: str) -> None:
        """Ablation curves and class selectivity of the current layer on `folder`."""
        if self.layer is None:
            self.show_notice(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.backend.start_ablation(folder, self.layer)
        self.center_tabs.setCurrentWidget(self.ablation_pane)
        self.show_notice(Notice(f"ablation curves of {self.layer} on {folder}…"))

    def cancel_job(self, kind: JobKind) -> None:
        self.backend.cancel_job(kind)

    def toggle_help(self) -> None:
        self.help_overlay.toggle()

    def save_screenshot(self, path: str | Path) -> Path:
        """Grab the window to a PNG (atomically); raises OSError."""
        return save_widget_png(self, path)

    def shutdown(self) -> None:
        """Stop polling and stop the backend; only the first call does anything."""
        if self._stopped:
            return
        self._stopped = True
        self.timer.stop()
        self._notice_timer.stop()
        self.backend.stop()
        self.patch_dialog.wait_idle()  # a source image being decoded: at most one, bounded

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

    def _on_grid_aspect_changed(self, _aspect: float) -> None:
        if self.layer is not None:  # before a model is ready there is nothing to re-tile
            self._send_view()

    def _send_view(self) -> None:
        selection = (self.layer, self.unit) if self.layer is not None else None
        changed = selection is not None and selection != self._requested
        if changed:
            # a position in the old unit's map means nothing in the new one
            self.attribution_at = None
            self.unit_pane.set_position(None)
        self.backend.set_view(self.view_state())
        if changed:
            self._request_unit()

    def _request_unit(self) -> None:
        """Ask for the selected unit's patches and preferred image; clear the stale ones."""
        if self.layer is None:
            return
        self._requested = (self.layer, self.unit)
        self.patches_view.set_loading(self.layer, self.unit)
        self.preferred_view.set_waiting(self.layer, self.unit)
        self.ablation_pane.set_unit(self.layer, self.unit)
        self._update_ablation_display()
        self.backend.request_unit(self.layer, self.unit)

    def _ablation_changed(self) -> None:
        self.ablated = {layer: units for layer, units in self.ablated.items() if units}
        self._send_view()
        self._update_ablation_display()

    def _update_ablation_display(self) -> None:
        rows = [(layer, unit) for layer, units in self.ablated_state() for unit in units]
        self.unit_pane.set_deleted(rows, self.is_ablated(self.layer, self.unit))
        shown = self.last_result.layer if self.last_result is not None else self.layer
        self.grid.set_ablated(tuple(self.ablated.get(shown or "", ())))
        self.restore_all_action.setEnabled(bool(rows))

    def _on_unit_patches(self, event: UnitPatches) -> None:
        if (event.layer, event.unit) == (self.layer, self.unit):  # else: a stale answer
            self.patches_view.set_dataset(event.patches, event.note)

    def _on_preferred_image(self, event: PreferredImage) -> None:
        if (event.layer, event.unit) == (self.layer, self.unit):
            self.preferred_view.show_image(event)
        if event.done:
            self._preferred_images_changed(event.layer, event.unit)

    # ------------------------------------------------------------------ preferred grid
    def _on_preferred_grid_toggled(self) -> None:
        """G: the grid shows each unit's preferred image (from the cache) instead of its map."""
        self._preferred_grid = None
        if self.preferred_grid_action.isChecked():
            layer = self.last_result.layer if self.last_result is not None else self.layer
            if layer:
                self._request_preferred_grid(layer)
        elif self.last_result is not None:
            self.grid.set_mosaic(self.last_result.mosaic, self.last_result.geometry)
            self._refresh_grid_marks()
            self._update_grid_title(self.last_result)

    def _request_preferred_grid(self, layer: str) -> None:
        if self._preferred_grid_pending == layer:
            return  # one request per layer in flight; the answer re-arms it
        self._preferred_grid_pending = layer
        self.backend.request_preferred_grid(layer, self.grid.aspect())

    def _on_preferred_grid(self, event: PreferredGrid) -> None:
        if self._preferred_grid_pending == event.layer:
            self._preferred_grid_pending = None
        shown = self.last_result.layer if self.last_result is not None else self.layer
        if not self.preferred_grid_action.isChecked() or event.layer != shown:
            return  # switched off, or another layer is shown by now
        self._preferred_grid = event
        self.grid.set_mosaic(event.image, event.geometry)
        self._refresh_grid_marks()
        if self.last_result is not None:
            self._update_grid_title(self.last_result)

    def _refresh_grid_marks(self) -> None:
        """Selection outline and deletion crosses for the geometry now shown."""
        shown = self.last_result.layer if self.last_result is not None else self.layer
        self.grid.set_selected(self.unit if shown == self.layer else None)
        self.grid.set_ablated(tuple(self.ablated.get(shown or "", ())))

    def _preferred_images_changed(self, layer: str, unit: int | None = None,
                                  force: bool = False) -> None:
        """New preferred images of `layer` are cached: refresh the grid if it shows them.

        Rebuilding reads every cached image of the layer, so a unit already shown changes
        nothing, and during a whole-layer render the grid follows at most every few seconds
        (`force`: the render is over, show the final state).
        """
        shown = self._preferred_grid
        if not self.preferred_grid_action.isChecked() or shown is None or shown.layer != layer:
            return
        if unit is not None and unit in shown.rendered:
            return
        now = time.monotonic()
        if not force and unit is None and now - self._preferred_grid_asked < GRID_REFRESH_S:
            return
        self._preferred_grid_asked = now
        self._request_preferred_grid(layer)

    def _on_job_progress(self, event: JobProgress) -> None:
        if event.kind == JobKind.PREFERRED_GRID:
            return
        self.cancel_actions[event.kind].setEnabled(True)
        if event.kind == JobKind.RENDER:
            return  # the Preferred tab shows its steps; one per click would crowd the bar
        widget = self.jobs.get(event.kind)
        if event.kind == JobKind.RENDER_LAYER and event.done:
            self._preferred_images_changed(self._render_layer_name)  # a batch is cached
        if widget is None:
            widget = JobWidget(event.kind)
            widget.cancel_requested.connect(self.cancel_job)
            self.jobs_layout.addWidget(widget)
            self.jobs[event.kind] = widget
        widget.set_progress(event)
        if event.kind == JobKind.RENDER_LAYER:
            self.preferred_view.set_layer_job(event)
        elif event.kind == JobKind.ABLATE:
            self.ablation_pane.set_job(event)

    def _on_job_finished(self, event: JobFinished) -> None:
        if event.kind == JobKind.PREFERRED_GRID:
            self._preferred_grid_pending = None
            if not event.ok:
                self.show_notice(Notice(f"{JOB_NAMES[event.kind]}: {event.text}",
                                        NoticeLevel.WARNING))
            return  # quick and quiet: the grid itself is the news
        self.cancel_actions[event.kind].setEnabled(False)
        widget = self.jobs.pop(event.kind, None)
        if widget is not None:
            self.jobs_layout.removeWidget(widget)
            widget.deleteLater()
        if event.kind == JobKind.RENDER_LAYER:
            self.preferred_view.set_layer_job(None)
            self._preferred_images_changed(self._render_layer_name, force=True)
        elif event.kind == JobKind.ABLATE:
            self.ablation_pane.set_job(None)
        elif event.kind == JobKind.RENDER:
            self.preferred_view.set_render_running(False)
        level = NoticeLevel.INFO if event.ok else NoticeLevel.WARNING
        self.show_notice(Notice(f"{JOB_NAMES[event.kind]}: {event.text}", level))
        if event.ok and event.kind in (JobKind.SCAN, JobKind.RENDER_LAYER):
            self._request_unit()  # the new cache has this unit's patches / image now

    def _open_source(self, spec: str) -> None:
        self.show_notice(Notice(f"opening {spec}…"))
        self.backend.open_source(spec)

    def _load_model(self, spec: str) -> None:
        self.show_notice(Notice(f"loading model {spec}…"))
        self.model_label.setText(f"loading {Path(spec).name or spec}")
        self.backend.load_model(spec)

    def _step_source(self, delta: int) -> None:
        self.backend.step_source(delta)

    def _on_model_ready(self, event: ModelReady) -> None:
        self.layers = event.layers
        self.model_name = event.name
        names = [info.name for info in event.layers]
        wanted = self._initial_layer
        if wanted and wanted not in names:
            self.show_notice(
                Notice(f"layer {wanted!r} is not in {event.name}; showing "
                       f"{event.default_layer}", NoticeLevel.WARNING)
            )
        if wanted not in names:
            wanted = event.default_layer if event.default_layer in names else None
        if wanted is None and names:
            wanted = names[0]
        if self._initial_unit is not None:
            self.unit = self._initial_unit
        # the command-line layer and unit apply to the first model only
        self._initial_layer = None
        self._initial_unit = None

        self.layer_list.blockSignals(True)
        self.layer_list.clear()
        for info in event.layers:
            item = QListWidgetItem(layer_row_text(info))
            item.setToolTip(info.describe())
            self.layer_list.addItem(item)
        self.layer_list.blockSignals(False)
        self.layer = None  # so the row change below counts as a change and sends the view
        # units deleted from the old model mean nothing in the new one; ask for patches anew
        self.ablated.clear()
        self._requested = None
        if wanted is not None:
            self.layer_list.setCurrentRow(names.index(wanted))
            self.layer_list.scrollToItem(self.layer_list.currentItem())
        else:
            self._send_view()
        for name, action in self.model_actions.items():
            action.setChecked(name == event.name)
        self.model_label.setText(f"{event.name} · {event.device}")
        self.setWindowTitle(f"DeepVis Live — {event.name}")
        for placeholder in (self.grid.pane, self.unit_pane.pane):
            placeholder.set_placeholder("Waiting for frames…")
        self.show_notice(
            Notice(f"{event.name} ready on {event.device}: {len(event.layers)} layers, "
                   f"{event.num_classes} classes")
        )

    def _on_source_ready(self, event: SourceReady) -> None:
        label = event.label
        if event.kind == "folder" and event.count:
            label = f"{label}  {event.position + 1}/{event.count}"
        self.source_label = label
        self.source_status.setText(f"{event.kind}: {label}")
        self.input_view.title.setText(f"Input · {label}")

    # ------------------------------------------------------------------ display helpers

    def _channels(self) -> int:
        for info in self.layers:
            if info.name == self.layer:
                return info.channels
        g = self._shown_geometry()
        return g.channels if g is not None else 0

    def _shown_geometry(self) -> GridGeometry | None:
        """The geometry on screen, if it belongs to the selected layer."""
        r = self.last_result
        if r is None or (self.layer is not None and r.layer != self.layer):
            return None
        return r.geometry

    @staticmethod
    def _unit_heat(result: Result, unit: int) -> np.ndarray:
        """uint8 map of `unit`: its raw map when the result carries it, else its grid tile."""
        if unit == result.unit or not 0 <= unit < result.geometry.channels:
            return normalize_channels(result.unit_map[None], per_channel=True)[0]
        # the backend has not caught up with a new selection yet: the tile is the same map
        g = result.geometry
        y, x = g.tile_origin(unit)
        return np.ascontiguousarray(result.mosaic[y : y + g.tile_h, x : x + g.tile_w])

    def _update_selection_display(self) -> None:
        """Outline, unit pane and overlay follow the selection before the backend answers."""
        r = self.last_result
        layer = self.layer or (r.layer if r else "")
        self.unit_pane.set_title(layer, self.unit)
        if r is None or self._shown_geometry() is None:
            self.grid.set_selected(None)
            return
        self.grid.set_selected(self.unit)
        heat = self._unit_heat(r, self.unit)
        self.input_view.set_overlay(heat, r.crop)
        self.unit_pane.set_map(heat)
        self._update_unit_values(r, self.unit)
        self._shown_key = (r.layer, self.unit, r.frozen)

    def _update_unit_values(self, result: Result, unit: int) -> None:
        if not 0 <= unit < len(result.unit_max):
            self.unit_pane.set_values(" ")
            return
        text = f"max {result.unit_max[unit]:.2f}   mean {result.unit_mean[unit]:.2f}"
        if unit == result.unit and result.unit_map.size:
            m = result.unit_map
            r, c = np.unravel_index(int(np.argmax(m)), m.shape)
            text += f"   min {float(m.min()):.2f}   peak at ({r}, {c})"
            if self.attribution_at is not None:
                y, x = self.attribution_at
                if 0 <= y < m.shape[0] and 0 <= x < m.shape[1]:
                    text += f"   attributing ({y}, {x}) = {float(m[y, x]):.2f}"
        self.unit_pane.set_values(text)

    def _update_attribution_status(self, result: Result) -> None:
        if self.attribution == AttributionMode.OFF:
            self.attribution_label.hide()
            return
        if result.attribution is None or result.attribution_mode == AttributionMode.OFF:
            self.attribution_label.setText(f"{MODE_TEXT[self.attribution]} …")
        else:
            text = attribution_status(result.attribution_mode, result.attribution_ms)
            self.attribution_label.setText(text)
            where = "max" if self.attribution_at is None else f"({self.attribution_at[0]}, "
            if self.attribution_at is not None:
                where += f"{self.attribution_at[1]})"
            self.attribution_view.info.setText(
                f"{text} · {result.layer} · unit {result.unit} at {where}"
                " · click the unit map to pick a position"
            )
        self.attribution_label.show()

    def _update_grid_title(self, result: Result) -> None:
        shown = self._preferred_grid
        if self.preferred_grid_action.isChecked() and shown is not None:
            channels = shown.geometry.channels
            self.grid.title.setText(
                f"{shown.layer} · preferred images of {len(shown.rendered)} of {channels} "
                "units · G: activations"
                + ("" if len(shown.rendered) == channels else " · Preferred tab: render layer")
            )
            return
        g = result.geometry
        norm = "per-channel" if self.normalization == Normalization.PER_CHANNEL else "per-layer"
        self.grid.title.setText(
            f"{result.layer} · {g.channels} channels of {g.tile_h}×{g.tile_w} · {norm} scale"
        )

    def _update_status(self, result: Result) -> None:
        # a still image is re-rendered only on request: a rate would read as "0 fps, broken"
        rate = f"{result.fps:5.1f} fps" if result.fps > 0 else "still"
        self.stats_label.setText(
            f"{rate}   latency {result.latency_ms:4.0f} ms   "
            f"compute {result.compute_ms:4.0f} ms   dropped {result.dropped_frames}"
        )
        self.model_label.setText(f"{result.model} · {result.device}")
        if not self.source_label:
            self.source_status.setText(result.frame.source)
        self.frozen_label.setVisible(result.frozen)

    def _update_hover_label(self) -> None:
        unit = self.grid.hovered_unit
        r = self.last_result
        if unit is None or r is None or not 0 <= unit < len(r.unit_max):
            self.grid.hover_label.setText("")
            return
        self.grid.hover_label.setText(
            f"unit {unit}   max {r.unit_max[unit]:.2f}   mean {r.unit_mean[unit]:.2f}"
        )

    def _fit_input_height(self) -> None:
        """Give the input pane the height its frame needs; the message log takes the rest."""
        if self._frame_shape is None:
            return
        h, w = self._frame_shape[:2]
        sizes = self.left_column.sizes()
        total = sum(sizes)
        chrome = self.input_view.title.sizeHint().height() + 18  # title row and margins
        wanted = int((self.input_view.width() - 14) * h / max(w, 1)) + chrome
        log_h = max(90, total - wanted - self._predictions_h)
        self.left_column.setSizes([total - log_h - self._predictions_h, self._predictions_h, log_h])

    def _apply_colormap(self, name: str) -> None:
        self.colormap = name
        lut = lookup_table(name)
        self.grid.set_lut(lut)
        self.unit_pane.set_lut(lut)
        self.input_view.set_lut(overlay_table(name))

    # ------------------------------------------------------------------ input handlers

    def _on_layer_row_changed(self, row: int) -> None:
        if not 0 <= row < len(self.layers):
            return
        info = self.layers[row]
        if info.name == self.layer:
            return
        self.layer = info.name
        if not 0 <= self.unit < info.channels:
            self.unit = 0
        self._send_view()
        self._update_selection_display()

    def _on_unit_clicked(self, unit: int) -> None:
        self.select_unit(unit)

    def _on_unit_hovered(self, _unit: object) -> None:
        self._update_hover_label()

    def _on_freeze_toggled(self) -> None:
        self.frozen = self.freeze_action.isChecked()
        self._send_view()

    def _on_overlay_toggled(self, enabled: bool) -> None:
        self.input_view.set_overlay_enabled(enabled)

    def _on_mirror_toggled(self, mirror: bool) -> None:
        self.backend.set_mirror(mirror)

    def _on_escape(self) -> None:
        if self.help_overlay.isVisible():
            self.help_overlay.hide()
        else:
            self.set_attribution_at(None)

    def _on_unit_tab_changed(self, index: int) -> None:
        # hidden tabs are not fed per frame: bring the one just shown up to date at once
        r = self.last_result
        if r is None:
            return
        if index == UNIT_TAB and self._shown_geometry() is not None:
            self.unit_pane.set_map(self._unit_heat(r, self.unit))
        elif index == ATTRIBUTION_TAB and r.attribution is not None and (
            self.attribution != AttributionMode.OFF
        ):
            self.attribution_view.set_map(r.attribution)

    def _on_unit_position_clicked(self, y: int, x: int) -> None:
        if self.attribution_at == (y, x):
            self.set_attribution_at(None)
            return
        if self.attribution == AttributionMode.OFF:
            self.set_attribution(AttributionMode.GRADIENT)  # a click asks for attribution
        self.set_attribution_at((y, x))

    def _on_restore_requested(self, units: object) -> None:
        assert isinstance(units, list)
        self.restore_units(units)

    def _on_scan_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to scan")
        if folder:
            self.start_scan(folder)

    def _on_ablation_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder of images (class subfolders give accuracy)"
        )
        if folder:
            self.start_ablation(folder)

    def _on_patch_clicked(self, patch: object) -> None:
        assert isinstance(patch, Patch)
        self.patch_dialog.show_patch(patch)

    def _on_notice_expired(self) -> None:
        self.notice_label.setText("")

    def _on_open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self._open_source(path)

    def _on_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder of images")
        if path:
            self._open_source(path)

    def _on_open_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", VIDEO_FILTER)
        if path:
            self._open_source(path)

    def _on_open_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self._load_model(path)

    def _on_save_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save screenshot", "deepvis.png", "PNG images (*.png)"
        )
        if not path:
            return
        try:
            saved = self.save_screenshot(path)
        except OSError as exc:
            self.show_notice(Notice(str(exc), NoticeLevel.ERROR))
        else:
            self.show_notice(Notice(f"saved {saved}"))

    def _on_quit(self) -> None:
        self.close()

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
            self._open_source(paths[0])

    def closeEvent(self, event: QCloseEvent | None) -> None:
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()
