"""The centre column's tabs and what showing one turns on.

Showing the unit card fills it (its extras job) and turns attribution on when the user had
it off — and off again when the card goes; showing the Why tab (or tinting the grid by
attribution) asks the worker to explain each frame. Those side effects live here, so the
window only wires.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PyQt6.QtCore import QObject

from app.core.backend import LiveBackend
from app.core.messages import AttributionMode, Notice, NoticeLevel
from app.core.requests import (
    AccentuateRequest,
    ActivationGridRequest,
    GroupIconsRequest,
    IntegratedRequest,
    InvertRequest,
    Request,
    UnitCardRequest,
    UnitIconsRequest,
)
from app.core.results import BuildingBlocks
from app.gui.actions import ActionSet
from app.gui.result_presenter import ResultPresenter
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout


class CentreTabs(QObject):
    """Unit card, Why, and the grid's attribution tint: their keys and side effects."""

    def __init__(self, backend: LiveBackend, model: ViewModel, panes: WindowLayout,
                 results: ResultPresenter, notify: Callable[[Notice], None],
                 parent: QObject | None = None
                 ) -> None:
        super().__init__(parent)
        self._backend, self._model, self._panes, self._results = backend, model, panes, results
        self._notify = notify
        self._actions: ActionSet | None = None
        self._card_attribution = False  # the unit card turned attribution on, not the user
        self._tint = False

    def bind(self, actions: ActionSet) -> None:
        """The window's actions (built after this object: their slots point here)."""
        self._actions = actions

    def toggle_unit_card(self, on: bool) -> None:
        """`c`: show the unit card in the centre column, or go back to the activations."""
        if on and not self._panes.showing_card():
            self._panes.show_card()
        elif not on and self._panes.showing_card():
            self._panes.show_activations()

    def toggle_why(self, on: bool) -> None:
        """`w`: show why the network predicts what it does, or go back to the activations."""
        if on and not self._panes.showing_blocks():
            self._panes.show_blocks()
        elif not on and self._panes.showing_blocks():
            self._panes.show_activations()

    def set_grid_tint(self, on: bool) -> None:
        """`a`: the grid tinted by each channel's attribution (the worker explains then)."""
        self._tint = on
        self._results.set_grid_tint(on)
        self._model.set_explaining(on or self._panes.showing_blocks())

    def on_tab_changed(self, _index: int) -> None:
        """The unit card shown: fill it (its extras, the live attribution); hidden: the
        attribution it turned on goes off again, and its job stops."""
        model, panes, showing = self._model, self._panes, self._panes.showing_card()
        if self._actions is not None:
            self._actions.set_checked("unit_card", showing)
            self._actions.set_checked("why", panes.showing_blocks())
        # the worker computes them while the Why tab or the grid's tint needs them
        model.set_explaining(panes.showing_blocks() or self._tint)
        self._results.update_blocks()
        if showing:
            if model.attribution == AttributionMode.OFF:
                self._card_attribution = True  # the card's, not the user's
                model.set_attribution(AttributionMode.GUIDED)
            if model.layer is not None:
                self._backend.submit(UnitCardRequest(model.layer, model.unit))
            self._results.update_card()
        else:
            self._backend.cancel(UnitCardRequest.kind)
            if self._card_attribution and model.attribution == AttributionMode.GUIDED:
                model.set_attribution(AttributionMode.OFF)
            self._card_attribution = False

    def on_integrated_requested(self) -> None:
        """Path-integrated attribution of the frame on screen, frozen so it stays."""
        r = self._results.last_result
        e = r.record(BuildingBlocks) if r is not None else None
        notify = self._notify
        if r is None or e is None:
            notify(Notice("nothing explained yet", NoticeLevel.WARNING))
            return
        self._model.set_frozen(True)
        self._panes.blocks.set_integrated_running(True)
        self._backend.submit(IntegratedRequest(r.frame.image, e.layer, e.target, e.versus))
        notify(Notice(f"path-integrated attribution of {e.layer}…"))

    def accentuate(self) -> None:
        """`x`: what in this frame the selected unit responds to (frozen first)."""
        layer, r = self._model.layer, self._results.last_result
        self._frame_image(AccentuateRequest(r.frame.image, layer, self._model.unit)
                          if layer and r is not None else None)

    def activation_grid(self) -> None:
        """`m`: the activation grid of the shown layer for this frame (frozen first)."""
        layer, r = self._model.layer, self._results.last_result
        self._frame_image(ActivationGridRequest(r.frame.image, layer)
                          if layer and r is not None else None)

    def invert(self) -> None:
        """`v`: the frame rebuilt from three layers at increasing depth (frozen first)."""
        maps = [i.name for i in self._model.layers if i.shape[1:] != (1, 1)]
        # whole blocks where the model has them (their outputs are what a block keeps)
        blocks = [n for n in maps if n.count(".") <= 1]
        blocks = blocks if len(blocks) >= 3 else maps
        picks = (tuple(dict.fromkeys(blocks[int(len(blocks) * f)] for f in (0.15, 0.45, 0.75)))
                 if blocks else ())
        r = self._results.last_result
        if self._frame_image(InvertRequest(r.frame.image, picks)
                             if picks and r is not None else None):
            self._panes.frame_pane.set_inverted_layers(picks)

    def _frame_image(self, request: Request | None) -> bool:
        """Freeze the frame and start the "This frame" job on it (None, False: no frame or
        no layer yet, said in the messages)."""
        if request is None:
            self._notify(Notice("no frame yet", NoticeLevel.WARNING))
            return False
        self._model.set_frozen(True)
        self._panes.show_frame()
        self._backend.submit(request)
        return True

    def on_group_icons_wanted(self, layer: str, directions: object) -> None:
        assert isinstance(directions, np.ndarray)
        self._backend.submit(GroupIconsRequest(layer, directions))

    def on_icons_wanted(self, layer: str, units: object) -> None:
        assert isinstance(units, tuple)
        self._backend.submit(UnitIconsRequest(layer, units))
