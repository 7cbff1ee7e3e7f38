"""Where the panes sit: three columns of splitters, and the sizes they start at.

Left: input, predictions, messages. Middle: the activation grid, and the ablation plots as
a second tab. Right: layers, and the selected unit's tabs (Unit, Top patches, Preferred,
Attribution). The help card lies over all of them. Nothing here reacts to data: the window
wires the panes, the presenters feed them.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QMainWindow, QSplitter, QTabWidget, QVBoxLayout, QWidget

from app.core.settings import Settings
from app.gui.ablation_view import AblationPane
from app.gui.attribution_view import AttributionPane
from app.gui.grid_view import ActivationGrid
from app.gui.help_overlay import HelpOverlay
from app.gui.input_view import InputView
from app.gui.layer_list import LayerListPane
from app.gui.messages_view import MessagesPane
from app.gui.patch_dialog import PatchDialog
from app.gui.patches_view import TopPatchesPane
from app.gui.predictions_view import PredictionsPane
from app.gui.preferred_view import PreferredPane
from app.gui.unit_pane import UnitPane, UnitTab

MIN_LOG_H = 90  # the message log keeps a few lines whatever the frame's shape
START_LOG_H = 120


class WindowLayout:
    """Builds every pane into `window`'s central widget; the panes are its attributes."""

    def __init__(self, settings: Settings, window: QMainWindow) -> None:
        central = QWidget()
        central.setObjectName("central")
        outer = QVBoxLayout(central)
        outer.setContentsMargins(8, 8, 8, 8)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setHandleWidth(8)
        splitter.setChildrenCollapsible(False)
        outer.addWidget(splitter)

        self.input = InputView(settings.view.overlay_opacity)
        self.predictions = PredictionsPane()
        self.messages = MessagesPane()
        self._left = QSplitter(Qt.Orientation.Vertical)
        self._left.setHandleWidth(8)
        for pane, stretch in ((self.input, 1), (self.predictions, 0), (self.messages, 0)):
            self._left.addWidget(pane)
            self._left.setStretchFactor(self._left.count() - 1, stretch)

        self.grid = ActivationGrid()
        self.ablation = AblationPane()
        self._center = QTabWidget()
        self._center.setDocumentMode(True)
        self._center.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._center.addTab(self.grid, "Activations")
        self._center.addTab(self.ablation, "Ablation")

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
        right.addWidget(self.layers)
        right.addWidget(self.unit)

        splitter.addWidget(self._left)
        splitter.addWidget(self._center)
        splitter.addWidget(right)
        for index, stretch in enumerate((0, 1, 0)):
            splitter.setStretchFactor(index, stretch)
        width, height = settings.gui.width, settings.gui.height
        side = max(300, int(width * 0.24))
        splitter.setSizes([side, width - 2 * side, side])
        self._predictions_h = self.predictions.sizeHint().height()
        self._left.setSizes(
            [height - self._predictions_h - START_LOG_H, self._predictions_h, START_LOG_H]
        )
        right.setSizes([height * 3 // 10, height * 7 // 10])
        window.setCentralWidget(central)
        self.help = HelpOverlay(central)
        self.patch_dialog = PatchDialog(window)

    def fit_input_height(self, frame_shape: tuple[int, ...]) -> None:
        """Give the input pane the height its frame needs; the message log takes the rest."""
        h, w = frame_shape[:2]
        total = sum(self._left.sizes())
        wanted = int((self.input.width() - 14) * h / max(w, 1)) + self.input.chrome_height()
        log_h = max(MIN_LOG_H, total - wanted - self._predictions_h)
        self._left.setSizes([total - log_h - self._predictions_h, self._predictions_h, log_h])

    def show_ablation(self) -> None:
        self._center.setCurrentWidget(self.ablation)

    def show_activations(self) -> None:
        self._center.setCurrentWidget(self.grid)

    def showing_ablation(self) -> bool:
        return self._center.currentWidget() is self.ablation
