"""Shows results in the panes: one setImage per pane per frame, text at most every 250 ms.

Nothing here computes more than slicing small arrays. The selection shows at once, before
the backend has caught up with it: the unit's map is then cut from the grid's tile.
Hidden tabs are not fed per frame; the one just shown is brought up to date. Throttled
text is never left stale: when no result follows (a still or frozen image), the newest
one's text is shown once the interval has passed.
"""

from __future__ import annotations

import time

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from app.core.masks import concept_mask
from app.core.messages import LOGITS, AttributionMode, Frame, Result, SourceReady
from app.core.tiling import normalize_channels
from app.gui.attribution_view import MODE_TEXT, attribution_status
from app.gui.blocks_view import Overlay, groups_rgba, spatial_rgba
from app.gui.preferred_grid import PreferredGridMode
from app.gui.status_bar import StatusBar
from app.gui.unit_pane import UnitTab
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout

STATUS_INTERVAL_S = 0.25  # numbers that change every frame are unreadable faster than this
STILL_KINDS = ("image", "folder")  # sources that give a frame only when asked (open, n, p)
SATURATED_TEXT = (
    "No attribution: the unit is saturated at {where} (ReLU6 at 6), so its gradient is zero "
    "by definition. Click another position on the unit map, or pick another unit."
)
ZERO_TEXT = (
    "No attribution: no gradient flows back from the unit at {where} (zero everywhere). "
    "Click another position on the unit map, or pick another unit."
)


def unit_heat(result: Result, unit: int) -> np.ndarray:
    """uint8 map of `unit`: its raw map when the result carries it, else its grid tile."""
    if unit == result.unit or not 0 <= unit < result.geometry.channels:
        return normalize_channels(result.unit_map[None], per_channel=True)[0]
    # the backend has not caught up with a new selection yet: the tile is the same map
    g = result.geometry
    y, x = g.tile_origin(unit)
    return np.ascontiguousarray(result.mosaic[y : y + g.tile_h, x : x + g.tile_w])


def zero_attribution_reason(result: Result, at: tuple[int, int] | None) -> str | None:
    """Why `result`'s attribution map is blank, or None when it is not (or there is none)."""
    saliency = result.attribution
    if saliency is None or saliency.any():
        return None
    m = result.unit_map
    inside = at is not None and 0 <= at[0] < m.shape[0] and 0 <= at[1] < m.shape[1]
    where = f"({at[0]}, {at[1]})" if at is not None and inside else "its maximum"
    value = float(m[at] if at is not None and inside else m.max()) if m.size else None
    # ReLU6's gradient is 0 at exactly 6: every backward rule then returns a zero map
    return (SATURATED_TEXT if value == 6.0 else ZERO_TEXT).format(where=where)


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
        # (layer, unit, threshold) of the selected unit's dissection: its live concept mask
        self._concept: tuple[str, int, float] | None = None
        self._overlay = Overlay.SPATIAL  # what the building blocks draw on the input
        self._icons_asked: tuple[str, tuple[int, ...]] | None = None
        self._groups_asked: tuple[str, tuple[tuple[int, ...], ...]] | None = None
        self._hover: tuple[float, float] | None = None  # the mouse over the crop, fractions
        self._tint = False  # the grid's tiles tinted by attribution
        self._attention_text = ""
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
        tab = p.unit.current_tab()
        if tab == UnitTab.UNIT:
            p.unit.set_map(heat)
        on = model.attribution != AttributionMode.OFF
        attribution = result.attribution if on else None
        p.input.set_attribution(attribution, result.crop)
        if attribution is not None and tab == UnitTab.ATTRIBUTION:
            blank = zero_attribution_reason(result, model.attribution_at)
            p.attribution.set_map(attribution, blank)
        self._show_mask(result, unit)  # first: the card's map caption says what it covers
        if p.showing_card():
            self._feed_card(result, unit, heat)
        self._show_blocks(result)
        p.input.set_attention(result.attention if self._model.attention else None, result.crop)
        if self._model.attention and result.attention_text != self._attention_text:
            self._attention_text = result.attention_text  # what the tint is, when it changes
            p.input.pane.setToolTip(result.attention_text)
        p.predictions.set_predictions(result.predictions, result.intact_predictions)
        p.patches.set_live(result.live_top)  # O(1) unless the patches changed
        self._follow_source(result.frame)

        # the caption must name the rule of the map on screen: a new mode is never throttled
        key = (result.layer, unit, result.frozen, result.attribution_mode)
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
        if model.attribution == AttributionMode.OFF:
            card.set_attribution(None, "Attribution is off · b turns it on")
        elif result.attribution is None or result.attribution_mode == AttributionMode.OFF:
            card.set_attribution(None, f"Computing {MODE_TEXT[model.attribution]}…")
        else:
            blank = zero_attribution_reason(result, model.attribution_at)
            # short enough for the card's third of a 1366-px screen ("Live attribution ·
            # guided backprop" was cut there)
            caption = f"Live {MODE_TEXT[result.attribution_mode]}"
            card.set_attribution(None if blank else result.attribution, blank or caption)

    def set_grid_tint(self, on: bool) -> None:
        self._tint = on
        if not on:
            self._panes.grid.set_tile_tint(None)

    def set_blocks_overlay(self, overlay: object) -> None:
        assert isinstance(overlay, Overlay)
        self._overlay = overlay
        self.update_blocks()

    def update_blocks(self) -> None:
        """The Why tab was shown or hidden, or its overlay changed: redraw from the last
        result (hidden: the input loses the overlay)."""
        if self.last_result is not None:
            self._show_blocks(self.last_result)

    def hover_input(self, fx: float, fy: float) -> None:
        """The mouse over the input's crop: the dictionary of the layer cell under it."""
        self._hover = (fx, fy) if fx >= 0 else None
        r = self.last_result
        if self._model.attention and r is not None and r.attention is not None:
            h, w = r.attention.shape
            self._model.set_attention_query(
                None if self._hover is None else (min(int(fy * h), h - 1),
                                                  min(int(fx * w), w - 1)))
        if r is not None and r.explanation is not None:
            self._show_cell(r.explanation.spatial.shape)

    def _show_cell(self, shape: tuple[int, ...]) -> None:
        if self._hover is None:
            self._panes.blocks.clear_cell()
            return
        h, w = shape
        fx, fy = self._hover
        self._panes.blocks.show_cell(min(int(fy * h), h - 1), min(int(fx * w), w - 1))

    def _show_blocks(self, result: Result) -> None:
        p, e = self._panes, result.explanation
        if self._tint:  # the grid shows this layer's channels: tint them by attribution
            ok = e is not None and e.layer == result.layer and not self._preferred.shown()
            p.grid.set_tile_tint(e.channels if ok and e is not None else None)
        if e is None or not p.showing_blocks():
            p.input.set_explanation_overlay(None, result.crop)
            if p.showing_blocks() and e is None:
                p.blocks.info.setText(
                    f"{result.layer} has no positions to explain (a 1×1 layer): pick a "
                    "layer with a map" if result.geometry.tile_h == 1 == result.geometry.tile_w
                    else "Explaining… (one forward and backward per frame)")
            return
        names = self._model.unit_name
        target = names(LOGITS, e.target) or f"class {e.target}"
        versus = "" if e.versus is None else names(LOGITS, e.versus) or f"class {e.versus}"
        p.blocks.set_explanation(e, target, versus)
        self._show_cell(e.spatial.shape)
        rgba = (spatial_rgba(e.spatial) if self._overlay == Overlay.SPATIAL else
                groups_rgba(e.group_spatial) if self._overlay == Overlay.GROUPS else None)
        p.input.set_explanation_overlay(rgba, result.crop)
        # the groups' own icons once per new set of groups (their top units say which)
        groups = (e.layer, tuple(tuple(int(u) for u in np.argsort(-g, kind="stable")[:3])
                                 for g in e.group_channels))
        if groups != self._groups_asked:
            self._groups_asked = groups
            self.group_icons_wanted.emit(e.layer, e.group_channels)
        wanted = (e.layer, p.blocks.icon_units())
        if wanted != self._icons_asked:  # ask once per new set of channels named
            self._icons_asked = wanted
            self.icons_wanted.emit(e.layer, wanted[1])

    def set_concept_threshold(self, layer: str, unit: int, threshold: float | None) -> None:
        """The unit's dissection threshold (None: not dissected): its mask goes on the input
        while the unit card is shown."""
        self._concept = None if threshold is None else (layer, unit, threshold)
        if self.last_result is not None:
            self._show_mask(self.last_result, self._model.unit)

    def _show_mask(self, result: Result, unit: int) -> None:
        c, p = self._concept, self._panes
        if (c is None or not p.showing_card() or (result.layer, unit) != c[:2]
                or result.unit != unit or not result.unit_map.size):
            p.input.set_mask(None, result.crop)
            p.card.set_mask_note("")
            return
        side = max(result.crop[2], 1)  # a mask pixel per crop pixel, as NetDissect's
        mask = concept_mask(result.unit_map, c[2], min(side, 224))
        p.input.set_mask(mask, result.crop)
        # an empty mask is news too: the unit does not see its concept in this frame
        p.card.set_mask_note(f"mask {100 * float(mask.mean()):.0f} %",
                             f"concept mask: {100 * float(mask.mean()):.1f} % of the input, "
                             f"where the map exceeds the unit's threshold {c[2]:.3f}")

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
        self._update_attribution_status(result)

    def _on_flush(self) -> None:
        """The throttle held back the newest result's text and nothing came after it."""
        r, model = self.last_result, self._model
        if r is None:
            return
        unit = model.unit if model.layer is None or r.layer == model.layer else r.unit
        self._update_texts(r, unit, (r.layer, unit, r.frozen, r.attribution_mode),
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
        self._shown_key = (r.layer, model.unit, r.frozen, r.attribution_mode)

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
            p.attribution.set_map(r.attribution, zero_attribution_reason(r, model.attribution_at))

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
