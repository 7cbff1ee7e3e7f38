"""A transformer's attention for the live view: which block, which query, one (h, w) map.

The worker's own recorded pass carries an `AttentionProbe` while the view asks for
attention, so it costs no extra forward: the weights are recomputed afterwards from the
attention modules' inputs. The block is the shown layer's (the last block when the shown
layer is not inside one); the query is the token under the mouse, else the class token;
heads are averaged, or the attention is rolled out through the blocks up to that one.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from torch import nn

from app.core.messages import ViewState
from app.engine.runtime.attention import CLS_QUERY, AttentionError, AttentionProbe


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
        inside = [i for i, name in enumerate(maps.blocks)
                  if name == layer or name.startswith(layer + ".")]
        block = inside[0] if inside else len(maps.blocks) - 1
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
