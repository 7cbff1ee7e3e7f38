"""The live top-k stage on screen: this session's best frames for the selected unit."""

from __future__ import annotations

from app.core.results import LiveTopRecord, Result
from app.gui.window_layout import WindowLayout


class LiveTopPresenter:
    def __init__(self, panes: WindowLayout) -> None:
        self._panes = panes

    def show(self, _result: Result, rec: LiveTopRecord | None) -> None:
        self._panes.patches.set_live(() if rec is None else rec.patches)  # O(1) if unchanged
