"""Shows results in the panes: one setImage per pane per frame, text at most every 250 ms.

The basics (grid, input, unit map, titles and numbers) are shown here; each live stage's
record goes through `{record type: handler}` to its view in `app/gui/stage_views/`, called
with None when a frame has none, so a new live feature adds a row, not a method. Nothing
here computes more than slicing small arrays. The selection shows at once, before
the backend has caught up with it: the unit's map is then cut from the grid's tile.
Hidden tabs are not fed per frame; the one just shown is brought up to date. Throttled
text is never left stale: when no result follows (a still or frozen image), the newest
one's text is shown once the interval has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from app.core.messages import AttributionMode, Frame, SourceReady
from app.core.results import (
    AtlasRecord,
    AttentionRecord,
    AttributionRecord,
    BuildingBlocks,
    DeletionRecord,
    LiveTopRecord,
    Result,
)
from app.core.tiling import normalize_channels
from app.gui.blocks_view import Overlay
from app.gui.preferred_grid import PreferredGridMode
from app.gui.stage_views.atlas import AtlasPresenter
from app.gui.stage_views.attention import AttentionPresenter
from app.gui.stage_views.attribution import AttributionPresenter, shown_mode
from app.gui.stage_views.blocks import BlocksPresenter
from app.gui.stage_views.concept_mask import ConceptMaskPresenter
from app.gui.stage_views.deletion import DeletionPresenter
from app.gui.stage_views.live_top import LiveTopPresenter
from app.gui.status_bar import StatusBar
from app.gui.unit_pane import UnitTab
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout

STATUS_INTERVAL_S = 0.25  # numbers that change every frame are unreadable faster than this
STILL_KINDS = ("image", "folder")  # sources that give a frame only when asked (open, n, p)
Handler = Callable[[Result, Any], None]


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
    icons_wanted = pyqtSignal(str, object)  # (layer, units): the Why tab names new channels
    group_icons_wanted = pyqtSignal(str, object)  # (layer, (k, C) directions): new groups

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
        # (layer, unit, frozen, attribution mode) whose text is on screen
        self._shown_key: tuple[str, int, bool, AttributionMode] | None = None
        self._frame_shape: tuple[int, ...] | None = None
        self._source: SourceReady | None = None
        self._source_frame: str | None = None  # the frame name the source label was made from
        self._hover: tuple[float, float] | None = None  # the mouse over the crop, fractions
        self._attribution = AttributionPresenter(model, panes, status)
        self._blocks = BlocksPresenter(model, panes, preferred, self.icons_wanted.emit,
                                       self.group_icons_wanted.emit)
        self._attention = AttentionPresenter(model, panes)
        self._mask = ConceptMaskPresenter(panes)
        self._atlas = AtlasPresenter(panes)
        # each live stage's record to its presenter; called with None when a frame has none
        self._handlers: dict[type, Handler] = {
            AttributionRecord: self._attribution.show,
            BuildingBlocks: self._blocks.show,
            AttentionRecord: self._attention.show,
            DeletionRecord: DeletionPresenter(panes).show,
            LiveTopRecord: LiveTopPresenter(panes).show,
            AtlasRecord: self._atlas.show,
        }
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.timeout.connect(self._on_flush)

    def set_source(self, event: SourceReady) -> None:
        """A source opened: name it in the input title and the status bar."""
        self._source = event
        self._source_frame = None
        label = event.label
        if event.kind == "folder" and event.count:
            label = f"{label}  {event.position + 1}/{event.count}"
        self._show_source_label(event.kind, label)

    def source_kind(self) -> str | None:
        """"camera", "video", "image", "folder"; None before a source opened."""
        return self._source.kind if self._source is not None else None

    def source_is_still(self) -> bool:
        """Whether the source gives frames only when asked (an image, a folder)."""
        return self.source_kind() in STILL_KINDS

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
        if p.unit.current_tab() == UnitTab.UNIT:
            p.unit.set_map(heat)
        self._mask.show(result, unit)  # first: the card's map caption says what it covers
        if p.showing_card():
            self._feed_card(result, unit, heat)
        for kind, handler in self._handlers.items():
            handler(result, result.record(kind))
        self._follow_source(result.frame)

        # the caption must name the rule of the map on screen: a new mode is never throttled
        key = (result.layer, unit, result.frozen, shown_mode(result))
        now = time.monotonic()
        if key != self._shown_key or now - self._last_status >= STATUS_INTERVAL_S:
            self._update_texts(result, unit, key, now)
        elif not self._flush.isActive():
            wait = STATUS_INTERVAL_S - (now - self._last_status)
            self._flush.start(max(1, int(wait * 1000) + 1))
        self.results_shown += 1
        self.result_shown.emit(self.results_shown)

    def _feed_card(self, result: Result, unit: int, heat: np.ndarray) -> None:
        """The unit card's live half: the map and the attribution of this frame."""
        card, model = self._panes.card, self._model
        layer = result.layer if model.layer is None else model.layer
        card.set_unit(layer, unit, model.unit_name(layer, unit))
        # short: with the concept mask's share it still fits a third of a 1280-px card
        caption = (f"Map · max {result.unit_max[unit]:.2f}"
                   if 0 <= unit < len(result.unit_max) else "Live map")
        card.set_map(heat, caption)
        self._attribution.feed_card(result)

    def set_grid_tint(self, on: bool) -> None:
        self._blocks.set_tint(on)

    def set_blocks_overlay(self, overlay: object) -> None:
        assert isinstance(overlay, Overlay)
        self._blocks.overlay = overlay
        self.update_blocks()

    def update_blocks(self) -> None:
        """The Why tab was shown or hidden, or its overlay changed: redraw from the last
        result (hidden: the input loses the overlay)."""
        r = self.last_result
        if r is not None:
            self._blocks.show(r, r.record(BuildingBlocks))

    def hover_input(self, fx: float, fy: float) -> None:
        """The mouse over the input's crop: the attention's query, the dictionary of the
        layer cell under it and the atlas cell its position fell into follow."""
        self._hover = (fx, fy) if fx >= 0 else None
        r = self.last_result
        if r is not None:
            self._attention.hover(r, self._hover)
            self._blocks.hover(r, self._hover)
            self._atlas.hover(r, self._hover)

    def set_concept_threshold(self, layer: str, unit: int, threshold: float | None) -> None:
        """The unit's dissection threshold (None: not dissected): its mask goes on the input
        while the unit card is shown."""
        self._mask.concept = None if threshold is None else (layer, unit, threshold)
        if self.last_result is not None:
            self._mask.show(self.last_result, self._model.unit)

    def update_card(self) -> None:
        """The unit card was just shown: bring its live half up to date."""
        r, model = self.last_result, self._model
        layer = model.layer or (r.layer if r else "")
        self._panes.card.set_unit(layer, model.unit, model.unit_name(layer, model.unit))
        if r is None:
            return
        unit = model.unit if model.layer is None or r.layer == model.layer else r.unit
        self._feed_card(r, unit, unit_heat(r, unit))

    def _update_texts(self, result: Result, unit: int,
                      key: tuple[str, int, bool, AttributionMode], now: float) -> None:
        """Titles, numbers and captions of `result` (throttled by the caller)."""
        p, model = self._panes, self._model
        self._flush.stop()
        # the outline and titles only move when the selection does; numbers throttled
        if key[:2] != (self._shown_key or ("", -1))[:2]:
            p.grid.set_selected(unit if result.layer == model.layer or model.layer is None
                                else None)
            p.grid.set_ablated(model.ablated_units(result.layer))
            p.unit.set_unit(result.layer, unit, model.unit_name(result.layer, unit))
        self._update_grid_title(result)
        self._shown_key = key
        self._last_status = now
        self._status.show_stats(result)
        self._update_unit_values(result, unit)
        self.update_hover()
        self._attribution.update_status(result)

    def _on_flush(self) -> None:
        """The throttle held back the newest result's text and nothing came after it."""
        r, model = self.last_result, self._model
        if r is None:
            return
        unit = model.unit if model.layer is None or r.layer == model.layer else r.unit
        self._update_texts(r, unit, (r.layer, unit, r.frozen, shown_mode(r)),
                           time.monotonic())

    def _follow_source(self, frame: Frame) -> None:
        """n/p in a folder: the labels name the picture on screen, not the first one."""
        src = self._source
        if src is None or src.kind != "folder" or frame.source == self._source_frame:
            return
        self._source_frame = frame.source
        label = frame.source
        if src.count:
            label = f"{label}  {frame.index + 1}/{src.count}"
        self._show_source_label(src.kind, label)

    def _show_source_label(self, kind: str, label: str) -> None:
        self._status.set_source(kind, label)
        self._panes.input.set_source_label(label)

    def update_selection(self) -> None:
        """Outline, unit pane and overlay follow the selection before the backend answers."""
        p, model, r = self._panes, self._model, self.last_result
        layer = model.layer or (r.layer if r else "")
        p.unit.set_unit(layer, model.unit, model.unit_name(layer, model.unit))
        if r is None or model.shown_geometry() is None:
            p.grid.set_selected(None)
            return
        p.grid.set_selected(model.unit)
        heat = unit_heat(r, model.unit)
        p.input.set_overlay(heat, r.crop)
        p.unit.set_map(heat)
        if p.showing_card():
            self._feed_card(r, model.unit, heat)
        self._update_unit_values(r, model.unit)
        self._shown_key = (r.layer, model.unit, r.frozen, shown_mode(r))

    def update_hover(self) -> None:
        """The hovered unit's maximum and mean under the grid."""
        grid, r = self._panes.grid, self.last_result
        unit = grid.hovered_unit
        if unit is None or r is None or not 0 <= unit < len(r.unit_max):
            grid.clear_hover_values()
            return
        grid.show_hover_values(unit, float(r.unit_max[unit]), float(r.unit_mean[unit]),
                               self._model.unit_name(r.layer, unit))

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
        self._attribution.update_mode()

    def update_tab(self, tab: str) -> None:
        """A unit tab was just shown: hidden tabs are not fed per frame, so feed it now."""
        p, model, r = self._panes, self._model, self.last_result
        if r is None:
            return
        if tab == UnitTab.UNIT and model.shown_geometry() is not None:
            p.unit.set_map(unit_heat(r, model.unit))
        elif tab == UnitTab.ATTRIBUTION:
            self._attribution.show_tab(r)

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

    def _update_grid_title(self, result: Result) -> None:
        shown = self._preferred.shown()
        if shown is not None:
            self._panes.grid.show_preferred_title(shown)
        else:
            self._panes.grid.show_activation_title(
                result.layer, result.geometry, self._model.normalization
            )
