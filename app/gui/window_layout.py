"""Where the panes sit: three columns of splitters, and the sizes they start at.

Left: input, predictions, messages. Middle, as tabs: the activation grid, the unit card
(the selected unit at a glance), why the prediction (the building blocks), this frame
(accentuated, inverted), the ablation
plots, the layer's dissection and its activation atlas. Right:
layers, and the selected unit's tabs (Unit, Top patches, Preferred, Attribution). The help
card lies over all of them. Nothing here reacts to data: the window wires the panes, the
presenters feed them.

The window starts no larger than the screen's free area, and the minimum sizes here keep
every pane visible and usable down to MIN_WINDOW (1280×720, a small laptop with a taskbar).
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import QMainWindow, QSplitter, QTabWidget, QVBoxLayout, QWidget

from app.core.settings import Settings
from app.gui.ablation_view import AblationPane
from app.gui.atlas_view import AtlasPane
from app.gui.attribution_view import AttributionPane
from app.gui.blocks_view import BlocksPane
from app.gui.dissection_view import DissectionPane
from app.gui.file_dialogs import ArchitectureDialog
from app.gui.frame_view import FramePane
from app.gui.grid_view import ActivationGrid
from app.gui.help_overlay import HelpOverlay
from app.gui.input_view import InputView
from app.gui.layer_list import LayerListPane
from app.gui.messages_view import MessagesPane
from app.gui.patch_dialog import PatchDialog
from app.gui.patches_view import TopPatchesPane
from app.gui.predictions_view import PredictionsPane
from app.gui.preferred_view import PreferredPane
from app.gui.unit_card import UnitCard
from app.gui.unit_pane import UnitPane, UnitTab

MIN_LOG_H = 90  # the message log keeps a few lines whatever the frame's shape
START_LOG_H = 120
MIN_WINDOW = (1280, 720)  # the smallest window every pane is laid out for
# title bar and borders the window manager adds around the window's own size
FRAME_ALLOWANCE = (16, 40)
MIN_INPUT_H = 120
MIN_GRID = (360, 300)
MIN_LAYERS_H = 110
MIN_UNIT_H = 330
MIN_SIDE_W = 300


def start_size(wanted: tuple[int, int], available: tuple[int, int] | None) -> tuple[int, int]:
    """The window's first size: `wanted`, shrunk to fit the screen's `available` area (less
    the frame) but not below MIN_WINDOW (a smaller screen gets the smallest usable layout);
    `available` None: no screen known."""
    if available is None:
        return wanted
    fits = (available[0] - FRAME_ALLOWANCE[0], available[1] - FRAME_ALLOWANCE[1])
    return (min(wanted[0], max(MIN_WINDOW[0], fits[0])),
            min(wanted[1], max(MIN_WINDOW[1], fits[1])))


class WindowLayout:
    """Builds every pane into `window`'s central widget; the panes are its attributes."""

    def __init__(self, settings: Settings, window: QMainWindow,
                 size: tuple[int, int] | None = None) -> None:
        central = QWidget()
        central.setObjectName("central")
        outer = QVBoxLayout(central)
        outer.setContentsMargins(8, 8, 8, 8)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setHandleWidth(8)
        splitter.setChildrenCollapsible(False)
        outer.addWidget(splitter)
        self._columns = splitter

        self.input = InputView(settings.view.overlay_opacity)
        self.predictions = PredictionsPane()
        self.messages = MessagesPane()
        self._left = QSplitter(Qt.Orientation.Vertical)
        self._left.setHandleWidth(8)
        self._left.setChildrenCollapsible(False)  # a pane dragged to nothing is a pane lost
        self.input.setMinimumHeight(MIN_INPUT_H)
        self.messages.setMinimumHeight(MIN_LOG_H)
        for pane, stretch in ((self.input, 1), (self.predictions, 0), (self.messages, 0)):
            self._left.addWidget(pane)
            self._left.setStretchFactor(self._left.count() - 1, stretch)

        self.grid = ActivationGrid()
        self.ablation = AblationPane()
        self._center = QTabWidget()
        self._center.setDocumentMode(True)
        self._center.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.card = UnitCard()
        self._center.addTab(self.grid, "Activations")
        self._center.addTab(self.card, "Unit card")
        self.blocks = BlocksPane()
        self._center.addTab(self.blocks, "Why")
        self.frame_pane = FramePane()
        self._center.addTab(self.frame_pane, "This frame")
        self._center.addTab(self.ablation, "Ablation")
        self.dissection = DissectionPane()
        self._center.addTab(self.dissection, "Dissection")
        self.atlas = AtlasPane()
        self._center.addTab(self.atlas, "Atlas")
        self.centre_tab_changed = self._center.currentChanged  # the window reacts to it

        self.layers = LayerListPane()
        self.unit = UnitPane()
        self.patches = TopPatchesPane()
        self.preferred = PreferredPane()
        self.attribution = AttributionPane()
        self.unit.add_tab(self.patches, UnitTab.PATCHES)
        self.unit.add_tab(self.preferred, UnitTab.PREFERRED)
        self.unit.add_tab(self.attribution, UnitTab.ATTRIBUTION)
        right = QSplitter(Qt.Orientation.Vertical)
        right.setHandleWidth(8)
        right.setChildrenCollapsible(False)
        right.addWidget(self.layers)
        right.addWidget(self.unit)
        self.grid.setMinimumSize(*MIN_GRID)
        self.layers.setMinimumHeight(MIN_LAYERS_H)
        self.unit.setMinimumHeight(MIN_UNIT_H)
        self._left.setMinimumWidth(MIN_SIDE_W)

        splitter.addWidget(self._left)
        splitter.addWidget(self._center)
        splitter.addWidget(right)
        for index, stretch in enumerate((0, 1, 0)):
            splitter.setStretchFactor(index, stretch)
        window.setCentralWidget(central)
        # measured with the window's style sheet applied: every unit tab's title stays
        # readable, no scroll arrows hiding "Attribution"
        self.unit.ensurePolished()
        side_min = max(MIN_SIDE_W, self.unit.tabs_width() + 16)
        right.setMinimumWidth(side_min)
        width, height = size or (settings.gui.width, settings.gui.height)
        side = max(side_min, int(width * 0.24))
        splitter.setSizes([side, width - 2 * side, side])
        self._predictions_h = self.predictions.sizeHint().height()
        self._left.setSizes(
            [height - self._predictions_h - START_LOG_H, self._predictions_h, START_LOG_H]
        )
        right.setSizes([height * 3 // 10, height * 7 // 10])
        self.help = HelpOverlay(central)
        self.patch_dialog = PatchDialog(window)
        self.architecture_dialog = ArchitectureDialog(window)

    def fit_input_height(self, frame_shape: tuple[int, ...]) -> None:
        """Give the input pane the height its frame needs; the message log takes the rest."""
        h, w = frame_shape[:2]
        total = sum(self._left.sizes())
        wanted = int((self.input.width() - 14) * h / max(w, 1)) + self.input.chrome_height()
        log_h = max(MIN_LOG_H, total - wanted - self._predictions_h)
        self._left.setSizes([total - log_h - self._predictions_h, self._predictions_h, log_h])

    def pane_widgets(self) -> dict[str, QWidget]:
        """The panes by name, for checks that each is on screen and large enough."""
        return {
            "input": self.input, "predictions": self.predictions, "messages": self.messages,
            "grid": self.grid, "layers": self.layers, "unit": self.unit,
        }

    def exportable(self, name: str) -> QWidget:
        """The pane File → Export pane saves under `name` (see actions.EXPORTABLE_PANES)."""
        panes: dict[str, QWidget] = {
            "input": self.input, "predictions": self.predictions, "grid": self.grid,
            "ablation": self.ablation, "unit": self.unit, "layers": self.layers,
            "card": self.card, "dissection": self.dissection, "blocks": self.blocks,
            "frame": self.frame_pane,
        }
        return panes[name]

    def reveal(self, name: str) -> None:
        """Bring an exportable pane on screen: a centre tab not shown would grab blank."""
        pane = self.exportable(name)
        if self._center.indexOf(pane) >= 0:
            self._center.setCurrentWidget(pane)

    def add_export_actions(self, actions: dict[str, QAction]) -> None:
        """Right-click on a pane offers its 'save as PNG' action (the File menu's one)."""
        for name, action in actions.items():
            pane = self.exportable(name)
            pane.addAction(action)
            pane.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

    def show_ablation(self) -> None:
        self._center.setCurrentWidget(self.ablation)

    def show_activations(self) -> None:
        self._center.setCurrentWidget(self.grid)

    def show_frame(self) -> None:
        self._center.setCurrentWidget(self.frame_pane)

    def show_blocks(self) -> None:
        self._center.setCurrentWidget(self.blocks)

    def showing_blocks(self) -> bool:
        return self._center.currentWidget() is self.blocks

    def show_dissection(self) -> None:
        self._center.setCurrentWidget(self.dissection)

    def showing_dissection(self) -> bool:
        return self._center.currentWidget() is self.dissection

    def show_card(self) -> None:
        self._center.setCurrentWidget(self.card)

    def showing_card(self) -> bool:
        return self._center.currentWidget() is self.card

    def showing_ablation(self) -> bool:
        return self._center.currentWidget() is self.ablation

    def show_atlas(self) -> None:
        self._center.setCurrentWidget(self.atlas)

    def showing_atlas(self) -> bool:
        return self._center.currentWidget() is self.atlas
