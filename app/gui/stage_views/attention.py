"""The attention stage on screen: the input tinted by a transformer's attention (key t), the
query following the mouse, and which block and query it is as the input's tooltip."""

from __future__ import annotations

from app.core.results import AttentionRecord, Result
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout


class AttentionPresenter:
    def __init__(self, model: ViewModel, panes: WindowLayout) -> None:
        self._model = model
        self._panes = panes
        self._text = ""

    def show(self, result: Result, rec: AttentionRecord | None) -> None:
        on = self._model.attention and rec is not None
        self._panes.input.set_attention(rec.weights if on and rec else None, result.crop)
        if on and rec is not None and rec.text != self._text:
            self._text = rec.text  # what the tint is, when it changes
            self._panes.input.set_attention_text(rec.text)

    def hover(self, result: Result, at: tuple[float, float] | None) -> None:
        """The mouse over the crop (fractions; None: off it): the query token follows."""
        rec = result.record(AttentionRecord)
        if not self._model.attention or rec is None or rec.weights is None:
            return
        h, w = rec.weights.shape
        self._model.set_attention_query(
            None if at is None else (min(int(at[1] * h), h - 1), min(int(at[0] * w), w - 1)))
