"""Shows results in the panes: one setImage per pane per frame, text at most every 250 ms.

Nothing here computes more than slicing small arrays. The selection shows at once, before
the backend has caught up with it: the unit's map is then cut from the grid's tile.
Hidden tabs are not fed per frame; the one just shown is brought up to date.
"""

from __future__ import annotations

import time

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from app.core.messages import AttributionMode, Result
from app.core.tiling import normalize_channels
from app.gui.attribution_view import MODE_TEXT, attribution_status
from app.gui.preferred_grid import PreferredGridMode
from app.gui.status_bar import StatusBar
from app.gui.unit_pane import UnitTab
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout

STATUS_INTERVAL_S = 0.25  # numbers that change every frame are unreadable faster than this


def unit_heat(result: Result, unit: int) -> np.ndarray:
    """uint8 map of `unit`: its raw map when the result carries it, else its grid tile."""
    if unit == result.unit or not 0 <= unit < result.geometry.channels:
        return normalize_channels(result.unit_map[None], per_channel=True)[0]
    # the backend has not caught up with a new selection yet: the tile is the same map
    g = result.geometry
    y, x = g.tile_origin(unit)
    return np.ascontiguousarray(result.mosaic[y : y + g.tile_h, x : x + g.tile_w])


class ResultPresenter(QObject):
    """Feeds `Result`s and the selection to the panes; `result_shown` counts the results."""

    result_shown = pyqtSignal(int)  # how many results have been shown so far

    def __init__(
        self,
        model: ViewModel,
        panes: WindowLayout,
        status: StatusBar,
        preferred: PreferredGridMode,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._model = model
        self._panes = panes
        self._status = status
        self._preferred = preferred
        self.last_result: Result | None = None
        self.results_shown = 0
        self._last_status = 0.0
        self._shown_key: tuple[str, int, bool] | None = None  # (layer, unit, frozen) on screen
        self._frame_shape: tuple[int, ...] | None = None

    def shown_layer(self) -> str | None:
        """The layer whose results are on screen (before any: the selected one)."""
        r = self.last_result
        return r.layer if r is not None else self._model.layer

    def show_result(self, result: Result) -> None:
        """Display one result: one setImage per pane, text at most every STATUS_INTERVAL_S."""
        p, model = self._panes, self._model
        self.last_result = result
        model.note_shown(result.layer, result.geometry)
        if not self._preferred.follow_result(result):
            p.grid.set_mosaic(result.mosaic, result.geometry)
        p.input.set_frame(result.frame.image, result.crop)
        if result.frame.image.shape != self._frame_shape:
            self._frame_shape = result.frame.image.shape
            p.fit_input_height(self._frame_shape)
        same_layer = model.layer is None or result.layer == model.layer
        unit = model.unit if same_layer else result.unit
        heat = unit_heat(result, unit)
        p.input.set_overlay(heat, result.crop)
        tab = p.unit.current_tab()
        if tab == UnitTab.UNIT:
            p.unit.set_map(heat)
        on = model.attribution != AttributionMode.OFF
        attribution = result.attribution if on else None
        p.input.set_attribution(attribution, result.crop)
        if attribution is not None and tab == UnitTab.ATTRIBUTION:
            p.attribution.set_map(attribution)
        p.predictions.set_predictions(result.predictions, result.intact_predictions)
        p.patches.set_live(result.live_top)  # O(1) unless the patches changed

        key = (result.layer, unit, result.frozen)
        now = time.monotonic()
        if key != self._shown_key or now - self._last_status >= STATUS_INTERVAL_S:
            # the outline and titles only move when the selection does; numbers throttled
            if key[:2] != (self._shown_key or ("", -1))[:2]:
                p.grid.set_selected(unit if same_layer else None)
                p.grid.set_ablated(model.ablated_units(result.layer))
                p.unit.set_unit(result.layer, unit)
            self._update_grid_title(result)
            self._shown_key = key
            self._last_status = now
            self._status.show_stats(result)
            self._update_unit_values(result, unit)
            self.update_hover()
            self._update_attribution_status(result)
        self.results_shown += 1
        self.result_shown.emit(self.results_shown)

    def update_selection(self) -> None:
        """Outline, unit pane and overlay follow the selection before the backend answers."""
        p, model, r = self._panes, self._model, self.last_result
        p.unit.set_unit(model.layer or (r.layer if r else ""), model.unit)
        if r is None or model.shown_geometry() is None:
            p.grid.set_selected(None)
            return
        p.grid.set_selected(model.unit)
        heat = unit_heat(r, model.unit)
        p.input.set_overlay(heat, r.crop)
        p.unit.set_map(heat)
        self._update_unit_values(r, model.unit)
        self._shown_key = (r.layer, model.unit, r.frozen)

    def update_hover(self) -> None:
        """The hovered unit's maximum and mean under the grid."""
        grid, r = self._panes.grid, self.last_result
        unit = grid.hovered_unit
        if unit is None or r is None or not 0 <= unit < len(r.unit_max):
            grid.clear_hover_values()
            return
        grid.show_hover_values(unit, float(r.unit_max[unit]), float(r.unit_mean[unit]))

    def update_grid_marks(self) -> None:
        """Selection outline, deletion crosses and title for the grid now shown."""
        grid, model = self._panes.grid, self._model
        shown = self.shown_layer()
        grid.set_selected(model.unit if shown == model.layer else None)
        grid.set_ablated(model.ablated_units(shown))
        if self.last_result is not None:
            self._update_grid_title(self.last_result)

    def update_position(self) -> None:
        """The attributed position moved: its outline and the numbers under the map."""
        self._panes.unit.set_position(self._model.attribution_at)
        if self.last_result is not None:
            self._update_unit_values(self.last_result, self._model.unit)

    def update_attribution_mode(self) -> None:
        """Attribution turned on, off or to another rule: input overlay, tab and badge."""
        p, mode = self._panes, self._model.attribution
        if mode == AttributionMode.OFF:
            self._status.set_attribution_text(None)
            p.input.set_attribution(None, (0, 0, 0, 0))
            p.attribution.set_off()
        else:
            p.attribution.set_computing(mode)
            self._status.set_attribution_text(f"{MODE_TEXT[mode]} …")

    def update_tab(self, tab: str) -> None:
        """A unit tab was just shown: hidden tabs are not fed per frame, so feed it now."""
        p, model, r = self._panes, self._model, self.last_result
        if r is None:
            return
        if tab == UnitTab.UNIT and model.shown_geometry() is not None:
            p.unit.set_map(unit_heat(r, model.unit))
        elif tab == UnitTab.ATTRIBUTION and r.attribution is not None and (
            model.attribution != AttributionMode.OFF
        ):
            p.attribution.set_map(r.attribution)

    def _update_unit_values(self, result: Result, unit: int) -> None:
        if not 0 <= unit < len(result.unit_max):
            self._panes.unit.set_values(" ")
            return
        text = f"max {result.unit_max[unit]:.2f}   mean {result.unit_mean[unit]:.2f}"
        if unit == result.unit and result.unit_map.size:
            m = result.unit_map
            r, c = np.unravel_index(int(np.argmax(m)), m.shape)
            text += f"   min {float(m.min()):.2f}   peak at ({r}, {c})"
            at = self._model.attribution_at
            if at is not None:
                y, x = at
                if 0 <= y < m.shape[0] and 0 <= x < m.shape[1]:
                    text += f"   attributing ({y}, {x}) = {float(m[y, x]):.2f}"
        self._panes.unit.set_values(text)

    def _update_attribution_status(self, result: Result) -> None:
        mode = self._model.attribution
        if mode == AttributionMode.OFF:
            self._status.set_attribution_text(None)
        elif result.attribution is None or result.attribution_mode == AttributionMode.OFF:
            self._status.set_attribution_text(f"{MODE_TEXT[mode]} …")
        else:
            text = attribution_status(result.attribution_mode, result.attribution_ms)
            self._status.set_attribution_text(text)
            self._panes.attribution.show_status(
                text, result.layer, result.unit, self._model.attribution_at
            )

    def _update_grid_title(self, result: Result) -> None:
        shown = self._preferred.shown()
        if shown is not None:
            self._panes.grid.show_preferred_title(shown)
        else:
            self._panes.grid.show_activation_title(
                result.layer, result.geometry, self._model.normalization
            )
