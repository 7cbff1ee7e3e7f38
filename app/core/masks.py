"""A unit's concept mask on a frame, as network dissection defines it (pure numpy).

NetDissect upsamples a unit's map bilinearly to the mask's resolution and keeps where it
exceeds the unit's threshold (its top-quantile activation over the dataset); the window
draws the same mask over the live frame, so a user sees where, right now, the unit sees
its concept.
"""

from __future__ import annotations

import numpy as np


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and weights of hi for half-pixel-centred resampling."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, pos - lo


def upsample_bilinear(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) → (height, width) float32, bilinear with pixel centres aligned (as
    `torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`)."""
    v = np.asarray(values, dtype=np.float64)
    y0, y1, wy = _axis(v.shape[0], height)
    x0, x1, wx = _axis(v.shape[1], width)
    top = v[y0][:, x0] * (1 - wx) + v[y0][:, x1] * wx
    bottom = v[y1][:, x0] * (1 - wx) + v[y1][:, x1] * wx
    return (top * (1 - wy)[:, None] + bottom * wy[:, None]).astype(np.float32)


def concept_mask(unit_map: np.ndarray, threshold: float, side: int) -> np.ndarray:
    """(side, side) uint8, 1 where the upsampled `unit_map` exceeds `threshold`."""
    return (upsample_bilinear(unit_map, side, side) > threshold).astype(np.uint8)
