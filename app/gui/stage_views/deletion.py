"""The deletion stage on screen: the predictions, the ablated net's beside the intact's."""

from __future__ import annotations

from app.core.results import DeletionRecord, Result
from app.gui.window_layout import WindowLayout


class DeletionPresenter:
    def __init__(self, panes: WindowLayout) -> None:
        self._panes = panes

    def show(self, result: Result, rec: DeletionRecord | None) -> None:
        self._panes.predictions.set_predictions(result.predictions,
                                                None if rec is None else rec.intact)
