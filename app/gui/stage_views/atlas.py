"""The atlas stage on screen: the cells this frame's positions fell into, lit on the Atlas
tab's atlas (only the one the record was placed on, and only while the tab is shown)."""

from __future__ import annotations

from app.core.results import AtlasRecord, Result
from app.gui.window_layout import WindowLayout


class AtlasPresenter:
    def __init__(self, panes: WindowLayout) -> None:
        self._panes = panes

    def show(self, _result: Result, rec: AtlasRecord | None) -> None:
        pane = self._panes.atlas
        if not self._panes.showing_atlas():
            return
        shown = pane.atlas
        placed = rec is not None and shown is not None and (
            rec.folder, rec.layer) == (shown.directions_folder, shown.layer)
        pane.set_lit(rec.weights if placed and rec is not None else None)
