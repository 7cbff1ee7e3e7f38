"""Semantic dictionary: at each position of a layer, the channels that fire most there.

Building Blocks pairs each position's activation vector with its top channels (4 by default)
and their icons: what the network "sees" at that point, in its own vocabulary. Computing it
for every position at once costs one sort of a (C, H, W) map, so the live view can make it
per frame and answer a hover with a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_TOP = 4


@dataclass(frozen=True)
class SemanticDictionary:
    """The `top` most active channels at each position, most active first."""

    units: np.ndarray  # (H, W, top) int64, channel indices
    values: np.ndarray  # (H, W, top) float32, their activations

    @property
    def top(self) -> int:
        return int(self.units.shape[2])

    def at(self, y: int, x: int) -> tuple[tuple[int, float], ...]:
        """((unit, activation), …) at position (y, x) of the layer's map."""
        return tuple((int(u), float(v)) for u, v in
                     zip(self.units[y, x], self.values[y, x], strict=True))


def as_map(acts: np.ndarray | torch.Tensor) -> np.ndarray:
    """One image's activation as (C, H, W) float32 numpy: (C,) and (1, C, …) accepted."""
    a = acts.detach().float().cpu().numpy() if isinstance(acts, torch.Tensor) else acts
    a = np.asarray(a, dtype=np.float32)
    if a.ndim in (2, 4) and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[:, None, None]
    if a.ndim != 3:
        raise ValueError(f"expected one image's (C, H, W) activation, got {a.shape}")
    return a


def semantic_dictionary(acts: np.ndarray | torch.Tensor,
                        top: int = DEFAULT_TOP) -> SemanticDictionary:
    """Top-`top` channels at each position of a (C, H, W) activation (ties: lower index)."""
    a = as_map(acts)
    if top < 1:
        raise ValueError("the dictionary needs at least one channel per position")
    k = min(top, a.shape[0])
    order = np.argsort(-a, axis=0, kind="stable")[:k]  # (k, H, W)
    values = np.take_along_axis(a, order, axis=0)
    return SemanticDictionary(order.transpose(1, 2, 0).astype(np.int64),
                              values.transpose(1, 2, 0).astype(np.float32))
