"""The atlas stage on screen: the cells this frame's positions fell into, lit on the Atlas
tab's atlas (only the one the record was placed on, and only while the tab is shown); the
mouse over the input marks the cell the position under it fell into."""

from __future__ import annotations

from app.core.results import AtlasRecord, Result
from app.gui.window_layout import WindowLayout


class AtlasPresenter:
    def __init__(self, panes: WindowLayout) -> None:
        self._panes = panes

    def _placed(self, rec: AtlasRecord | None) -> AtlasRecord | None:
        """`rec` when it is a placement on the atlas the shown tab draws, else None."""
        shown = self._panes.atlas.atlas
        if rec is None or shown is None or not self._panes.showing_atlas():
            return None
        return rec if (rec.folder, rec.layer) == (shown.directions_folder, shown.layer) else None

    def show(self, _result: Result, rec: AtlasRecord | None) -> None:
        if self._panes.showing_atlas():
            placed = self._placed(rec)
            self._panes.atlas.set_lit(None if placed is None else placed.weights)

    def hover(self, result: Result, at: tuple[float, float] | None) -> None:
        """The mouse over the crop (fractions; None: off it): its position's cell marked."""
        rec = self._placed(result.record(AtlasRecord))
        if rec is None:
            return
        cell = -1
        if at is not None:
            h, w = rec.cell_of.shape
            cell = int(rec.cell_of[min(int(at[1] * h), h - 1), min(int(at[0] * w), w - 1)])
        self._panes.atlas.mark(cell)
