"""The attention stage: a transformer's attention in the live view, one (h, w) map.

The worker's own recorded pass carries an `AttentionProbe` while the view asks for
attention, so it costs no extra forward: the weights are recomputed afterwards from the
attention modules' inputs. The block is the one the shown layer lies in (`block_of`; the
last for a container of blocks or a layer outside them); the query is the token under the
mouse, else the class token; heads are averaged, or the attention is rolled out through the
blocks up to that one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.results import AttentionRecord
from app.core.view import AttentionView
from app.engine.live.stages.base import BaseStage, FramePass, StageContext
from app.engine.runtime.attention import CLS_QUERY, AttentionError, AttentionProbe
from app.engine.runtime.recorder import split_layer_name


def block_of(layer: str, blocks: Sequence[str]) -> int:
    """The index of the attention block shown for `layer`, given the attention modules'
    names in call order.

    A block is the module that holds an attention module (its parent: torchvision's
    `encoder_layer_k` around `self_attention`, timm's `blocks.k` around `attn`); a layer
    shows the block it lies in, `NAME:cls` and a reused `NAME:k` like NAME. A container of
    several blocks (`encoder.layers`, `encoder`) shows the last of them, the one its output
    has just been through, and so does a layer outside every block (`conv_proj`, `heads`).
    """
    module, _call = split_layer_name(layer)
    holders = [name.rpartition(".")[0] or name for name in blocks]
    for i, holder in enumerate(holders):
        if module == holder or module.startswith(holder + "."):
            return i
    held = [i for i, holder in enumerate(holders)
            if module == "" or holder.startswith(module + ".")]
    return held[-1] if held else len(blocks) - 1


class AttentionStage(BaseStage):
    """Rides an `AttentionProbe` on the recorded pass while the view asks for attention; a
    model without global attention is told once, in the record's text."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.model = ctx.loaded.module
        self._missing: str | None = None  # why this model has no attention to show

    def around(self, frame: FramePass) -> contextlib.AbstractContextManager[Any]:
        if not frame.view.part(AttentionView).on or self._missing:
            return contextlib.nullcontext()
        try:
            probe = AttentionProbe(self.model)
        except AttentionError as exc:
            self._missing = f"no attention to show: {exc}"
            return contextlib.nullcontext()
        frame.notes["attention"] = probe
        return probe

    def record(self, frame: FramePass) -> AttentionRecord | None:
        view = frame.view.part(AttentionView)
        if not view.on:
            return None
        probe = frame.notes.get("attention")
        if not isinstance(probe, AttentionProbe):
            return AttentionRecord(None, self._missing or "")
        try:
            maps = probe.maps()
        except AttentionError as exc:
            return AttentionRecord(None, f"no attention to show: {exc}")
        block = block_of(self.ctx.source_of(frame.layer), maps.blocks)
        h, w = maps.grid
        q = view.query
        query: str | tuple[int, int]
        if q is not None and 0 <= q[0] < h and 0 <= q[1] < w:
            query = (int(q[0]), int(q[1]))
        elif maps.prefix:
            query = CLS_QUERY
        else:
            query = (h // 2, w // 2)
        where = "the class token" if query == CLS_QUERY else f"token {query}"
        if view.rollout:
            return AttentionRecord(
                maps.rollout(query, upto=block).astype(np.float32),
                f"attention rollout to block {block + 1} of {len(maps.blocks)}, from {where}")
        heads = maps.for_query(block, query)
        return AttentionRecord(heads.mean(0).astype(np.float32),
                               f"block {block + 1} of {len(maps.blocks)} "
                               f"({maps.blocks[block]}), {heads.shape[0]} heads averaged, "
                               f"from {where}")
