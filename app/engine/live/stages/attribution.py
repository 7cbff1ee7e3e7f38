"""The attribution stage: the selected unit mapped back to input pixels, by the view's rule.

One more forward and backward per frame on the attributor's own copy (`Attributor`), from
the unit's maximum or the position the user clicked; a model the rules cannot handle is told
once and the stage stays off.
"""

from __future__ import annotations

import time

import torch

from app.core.messages import AttributionMode
from app.core.results import AttributionRecord
from app.core.view import AttributionView
from app.engine.analyses.attribution.attributor import Attributor, saliency_to_uint8
from app.engine.live.stages.base import BaseStage, FramePass, StageContext


class AttributionStage(BaseStage):
    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self._attributor: Attributor | None = None  # made on the first frame that asks

    def record(self, frame: FramePass) -> AttributionRecord | None:
        view = frame.view.part(AttributionView)
        if view.mode == AttributionMode.OFF or self.error or self.ctx.is_concepts(frame.layer):
            return None  # a concept is a direction, not a module's channel: not attributed
        t0 = time.perf_counter()
        try:
            if self._attributor is None:
                self._attributor = Attributor(self.ctx.loaded.module)
            self._attributor.mode = view.mode
            h, w = self.ctx.layers[frame.layer].shape[1:]
            at = view.at
            pos = None if at is None else (min(max(at[0], 0), h - 1), min(max(at[1], 0), w - 1))
            with torch.enable_grad():
                saliency = self._attributor.attribute(frame.x, frame.layer, frame.unit, pos)
        except Exception as exc:  # a model attribution cannot handle: say so once, go on
            self.error = f"attribution unavailable: {exc}".splitlines()[0]
            return None
        return AttributionRecord(saliency_to_uint8(saliency), view.mode,
                                 (time.perf_counter() - t0) * 1e3)
