"""The concept mask on screen: where the selected unit's live map exceeds its dissection
threshold, drawn on the input while the unit card is shown (NetDissect's mask, live).

A window-side stage: the worker sends the unit's map anyway, so the mask costs a threshold
and an upsampling here, not a record.
"""

from __future__ import annotations

from app.core.masks import concept_mask
from app.core.results import Result
from app.gui.window_layout import WindowLayout


class ConceptMaskPresenter:
    def __init__(self, panes: WindowLayout) -> None:
        self._panes = panes
        # (layer, unit, threshold) of the selected unit's dissection: its live concept mask
        self.concept: tuple[str, int, float] | None = None

    def show(self, result: Result, unit: int) -> None:
        c, p = self.concept, self._panes
        if (c is None or not p.showing_card() or (result.layer, unit) != c[:2]
                or result.unit != unit or not result.unit_map.size):
            p.input.set_mask(None, result.crop)
            p.card.set_mask_note("")
            return
        side = max(result.crop[2], 1)  # a mask pixel per crop pixel, as NetDissect's
        mask = concept_mask(result.unit_map, c[2], min(side, 224))
        p.input.set_mask(mask, result.crop)
        # an empty mask is news too: the unit does not see its concept in this frame
        p.card.set_mask_note(f"mask {100 * float(mask.mean()):.0f}%",
                             f"concept mask: {100 * float(mask.mean()):.1f} % of the input, "
                             f"where the map exceeds the unit's threshold {c[2]:.3f}")
