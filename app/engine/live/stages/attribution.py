"""The attribution stage: the selected unit mapped back to input pixels, by the view's rule.

One more forward and backward per frame on the attributor's own copy (`Attributor`), from
the unit's maximum or the position the user clicked; a model the rules cannot handle is told
once and the stage stays off.

A unit of a direction layer (a concept, a CAV, an atlas cell) is a direction, not a
channel: its attributed value is the direction's dot product with the source layer's
activation at the position (the unit's maximum code, or the clicked position),
back-propagated as the true gradient on a private copy (the record says "gradient" whatever
rule is chosen: the attributor's modified rules take one channel as their seed).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from app.core.messages import AttributionMode
from app.core.results import AttributionRecord
from app.core.view import AttributionView
from app.engine.analyses.attribution.attributor import Attributor, saliency_to_uint8
from app.engine.live.stages.base import BaseStage, FramePass, StageContext
from app.engine.runtime.truncate import forward_to, private_copy

log = logging.getLogger(__name__)


class AttributionStage(BaseStage):
    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self._attributor: Attributor | None = None  # made on the first frame that asks
        self._copy: nn.Module | None = None  # for direction units, made on the first that asks

    def record(self, frame: FramePass) -> AttributionRecord | None:
        view = frame.view.part(AttributionView)
        if view.mode == AttributionMode.OFF or self.error:
            return None
        t0 = time.perf_counter()
        h, w = self.ctx.layers[frame.layer].shape[1:]
        at = view.at
        pos = None if at is None else (min(max(at[0], 0), h - 1), min(max(at[1], 0), w - 1))
        if self.ctx.is_direction(frame.layer):
            try:
                saliency = self.direction_saliency(frame, pos)
            except Exception as exc:  # a source the truncated forward cannot reach
                log.info("no attribution of %s: %s", frame.layer, exc)
                return None
            return AttributionRecord(saliency_to_uint8(saliency), AttributionMode.GRADIENT,
                                     (time.perf_counter() - t0) * 1e3)
        try:
            if self._attributor is None:
                self._attributor = Attributor(self.ctx.loaded.module)
            self._attributor.mode = view.mode
            with torch.enable_grad():
                saliency = self._attributor.attribute(frame.x, frame.layer, frame.unit, pos)
        except Exception as exc:  # a model attribution cannot handle: say so once, go on
            self.error = f"attribution unavailable: {exc}".splitlines()[0]
            return None
        return AttributionRecord(saliency_to_uint8(saliency), view.mode,
                                 (time.perf_counter() - t0) * 1e3)

    def direction_saliency(self, frame: FramePass, pos: tuple[int, int] | None) -> np.ndarray:
        """(S, S) |∂(d_k · a(pos))/∂x|, max over colour channels, for unit k = frame.unit of
        a direction layer (d_k its objective direction: what a renderer reads of it too)."""
        assert self.ctx.directions is not None
        layer = self.ctx.directions.layers[frame.layer]
        if pos is None:  # the unit's strongest position in this frame
            codes = frame.acts if frame.acts is not None else self.ctx.directions.codes(
                frame.layer, self.ctx.recorder)
            flat = int(codes[frame.unit].flatten().argmax())
            pos = (flat // codes.shape[-1], flat % codes.shape[-1])
        if self._copy is None:
            self._copy = private_copy(self.ctx.loaded.module, frame.x.device)
        direction = layer.objective_direction(frame.unit).to(frame.x.device)
        with torch.inference_mode(False), torch.enable_grad():
            inp = frame.x.detach().clone().requires_grad_(True)
            out = forward_to(self._copy, layer.set.source, inp)
            value = (out[0, :, pos[0], pos[1]].float() * direction).sum()
            (grad,) = torch.autograd.grad(value, inp, allow_unused=True)
        if grad is None:
            return np.zeros(frame.x.shape[-2:], np.float32)
        out_np: np.ndarray = grad[0].abs().amax(0).float().cpu().numpy()
        return out_np
