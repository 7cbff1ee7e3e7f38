"""A transformer's attention for the live view: which block, which query, one (h, w) map.

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
from torch import nn

from app.core.messages import ViewState
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


class LiveAttention:
    """Owns the probe decision for one model; `error` says once why there is none."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.error: str | None = None

    def probe(self, view: ViewState) -> contextlib.AbstractContextManager[Any]:
        """The context the recorded pass runs in: a probe when attention is asked for."""
        if not view.attention or self.error:
            return contextlib.nullcontext()
        try:
            return AttentionProbe(self.model)
        except AttentionError as exc:
            self.error = f"no attention to show: {exc}"
            return contextlib.nullcontext()

    def read(self, probe: Any, view: ViewState, layer: str) -> tuple[np.ndarray | None, str]:
        """(the (h, w) map, what it is) after the pass; (None, why) when there is none."""
        if not isinstance(probe, AttentionProbe):
            return None, self.error or ""
        try:
            maps = probe.maps()
        except AttentionError as exc:
            return None, f"no attention to show: {exc}"
        block = block_of(layer, maps.blocks)
        h, w = maps.grid
        q = view.attention_query
        query: str | tuple[int, int]
        if q is not None and 0 <= q[0] < h and 0 <= q[1] < w:
            query = (int(q[0]), int(q[1]))
        elif maps.prefix:
            query = CLS_QUERY
        else:
            query = (h // 2, w // 2)
        where = "the class token" if query == CLS_QUERY else f"token {query}"
        if view.attention_rollout:
            return (maps.rollout(query, upto=block).astype(np.float32),
                    f"attention rollout to block {block + 1} of {len(maps.blocks)}, from {where}")
        heads = maps.for_query(block, query)
        return (heads.mean(0).astype(np.float32),
                f"block {block + 1} of {len(maps.blocks)} ({maps.blocks[block]}), "
                f"{heads.shape[0]} heads averaged, from {where}")
