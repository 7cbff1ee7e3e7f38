"""The mosaic laid out on the CPU in numpy: the oracle the device tiling is checked against
(and what the fake backend shows)."""

from __future__ import annotations

import numpy as np

from app.core.tiling import GridGeometry


def tile_channels(maps: np.ndarray, geometry: GridGeometry, fill: int = 0) -> np.ndarray:
    """Lay (C, H, W) uint8 maps into one (height, width) mosaic, row-major by unit."""
    c, h, w = maps.shape
    g = geometry
    if (c, h, w) != (g.channels, g.tile_h, g.tile_w):
        raise ValueError(f"maps {maps.shape} do not match geometry {g}")
    cells = np.full((g.rows * g.cols, h + g.pad, w + g.pad), fill, dtype=maps.dtype)
    cells[:c, :h, :w] = maps
    grid = cells.reshape(g.rows, g.cols, h + g.pad, w + g.pad).transpose(0, 2, 1, 3)
    mosaic = grid.reshape(g.rows * (h + g.pad), g.cols * (w + g.pad))
    return np.ascontiguousarray(mosaic[: g.height, : g.width])
