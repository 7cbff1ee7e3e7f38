"""The attribution stage on screen: the input's tint, the Attribution tab, the card's half,
and the status badge naming the rule and its cost."""

from __future__ import annotations

import numpy as np

from app.core.messages import AttributionMode
from app.core.results import AttributionRecord, Result
from app.gui.attribution_view import MODE_TEXT, attribution_status
from app.gui.status_bar import StatusBar
from app.gui.unit_pane import UnitTab
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout

SATURATED_TEXT = (
    "No attribution: the unit is saturated at {where} (ReLU6 at 6), so its gradient is zero "
    "by definition. Click another position on the unit map, or pick another unit."
)
ZERO_TEXT = (
    "No attribution: no gradient flows back from the unit at {where} (zero everywhere). "
    "Click another position on the unit map, or pick another unit."
)


def shown_mode(result: Result) -> AttributionMode:
    """The rule of the attribution `result` carries (OFF: none)."""
    rec = result.record(AttributionRecord)
    return rec.mode if rec is not None else AttributionMode.OFF


def zero_attribution_reason(result: Result, at: tuple[int, int] | None) -> str | None:
    """Why `result`'s attribution map is blank, or None when it is not (or there is none)."""
    rec = result.record(AttributionRecord)
    if rec is None or rec.saliency.any():
        return None
    m = result.unit_map
    inside = at is not None and 0 <= at[0] < m.shape[0] and 0 <= at[1] < m.shape[1]
    where = f"({at[0]}, {at[1]})" if at is not None and inside else "its maximum"
    value = float(m[at] if at is not None and inside else m.max()) if m.size else None
    # ReLU6's gradient is 0 at exactly 6: every backward rule then returns a zero map
    return (SATURATED_TEXT if value == 6.0 else ZERO_TEXT).format(where=where)


class AttributionPresenter:
    def __init__(self, model: ViewModel, panes: WindowLayout, status: StatusBar) -> None:
        self._model = model
        self._panes = panes
        self._status = status

    def _saliency(self, result: Result) -> np.ndarray | None:
        rec = result.record(AttributionRecord)
        return None if rec is None or self._model.attribution == AttributionMode.OFF \
            else rec.saliency

    def show(self, result: Result, _rec: AttributionRecord | None) -> None:
        """Per frame: the input's tint, and the tab while it is shown."""
        p = self._panes
        saliency = self._saliency(result)
        p.input.set_attribution(saliency, result.crop)
        if saliency is not None and p.unit.current_tab() == UnitTab.ATTRIBUTION:
            p.attribution.set_map(saliency,
                                  zero_attribution_reason(result, self._model.attribution_at))

    def show_tab(self, result: Result) -> None:
        """The Attribution tab was just shown: hidden tabs are not fed per frame."""
        saliency = self._saliency(result)
        if saliency is not None:
            self._panes.attribution.set_map(
                saliency, zero_attribution_reason(result, self._model.attribution_at))

    def feed_card(self, result: Result) -> None:
        """The unit card's attribution of this frame."""
        card, mode = self._panes.card, self._model.attribution
        rec = result.record(AttributionRecord)
        if mode == AttributionMode.OFF:
            card.set_attribution(None, "Attribution is off · b turns it on")
        elif rec is None:
            card.set_attribution(None, f"Computing {MODE_TEXT[mode]}…")
        else:
            blank = zero_attribution_reason(result, self._model.attribution_at)
            # short enough for the card's third of a 1366-px screen ("Live attribution ·
            # guided backprop" was cut there)
            caption = f"Live {MODE_TEXT[rec.mode]}"
            card.set_attribution(None if blank else rec.saliency, blank or caption)

    def update_mode(self) -> None:
        """Attribution turned on, off or to another rule: input overlay, tab and badge."""
        p, mode = self._panes, self._model.attribution
        if mode == AttributionMode.OFF:
            self._status.set_attribution_text(None)
            p.input.set_attribution(None, (0, 0, 0, 0))
            p.attribution.set_off()
        else:
            p.attribution.set_computing(mode)
            self._status.set_attribution_text(f"{MODE_TEXT[mode]} …")

    def update_status(self, result: Result) -> None:
        """The badge and the tab's caption (throttled with the other texts)."""
        mode = self._model.attribution
        rec = result.record(AttributionRecord)
        if mode == AttributionMode.OFF:
            self._status.set_attribution_text(None)
        elif rec is None:
            self._status.set_attribution_text(f"{MODE_TEXT[mode]} …")
        else:
            text = attribution_status(rec.mode, rec.ms)
            self._status.set_attribution_text(text)
            self._panes.attribution.show_status(
                text, result.layer, result.unit, self._model.attribution_at)
