"""The live top-k stage: the frames of this session that excite the selected unit most.

Always on. New frames update the shown layer's `LiveTopK` on the device; the record is the
same tuple while neither the layer, the unit nor the top frames changed, so the GUI skips it.
"""

from __future__ import annotations

from app.core.messages import Patch
from app.core.results import LiveTopRecord
from app.engine.live.live_topk import LiveTopK
from app.engine.live.stages.base import BaseStage, FramePass, StageContext
from app.engine.runtime.receptive_field import receptive_field


class LiveTopStage(BaseStage):
    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.live_topk = LiveTopK(k=ctx.top_k_frames)  # kept on the device
        self._layer: str | None = None
        self._key: tuple[str, int, int] | None = None  # (layer, unit, change count)
        self._changes = 0
        self._record = LiveTopRecord(())

    def record(self, frame: FramePass) -> LiveTopRecord:
        layer, unit = frame.layer, frame.unit
        if layer != self._layer:
            self.live_topk.reset()
            self._layer = layer
            self._changes += 1
        if frame.frame_id is not None and frame.acts is not None:
            loaded = self.ctx.loaded
            rf = receptive_field(loaded.module, layer, loaded.preprocess.size)
            if self.live_topk.update(frame.acts, frame.frame_id, frame.image, frame.crop, rf):
                self._changes += 1
        key = (layer, unit, self._changes)
        if key != self._key:
            self._key = key
            self._record = LiveTopRecord(tuple(
                Patch(e.thumbnail, e.value, f"frame {e.frame_id}", e.box)
                for e in self.live_topk.top(unit)))
        return self._record
