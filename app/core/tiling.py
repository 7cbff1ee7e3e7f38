"""Geometry of the activation mosaic: channels laid out row-major in a grid of tiles.

The engine builds the mosaic on the device with the same geometry; the GUI maps mouse
positions back to units with it. Both sides use `GridGeometry` so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridGeometry:
    """Tile layout for `channels` maps of `tile_h`×`tile_w`, `pad` pixels between tiles."""

    channels: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    pad: int = 1

    @property
    def height(self) -> int:
        return self.rows * (self.tile_h + self.pad) - self.pad

    @property
    def width(self) -> int:
        return self.cols * (self.tile_w + self.pad) - self.pad

    def tile_origin(self, unit: int) -> tuple[int, int]:
        """Top-left (y, x) of `unit`'s tile in mosaic pixels."""
        if not 0 <= unit < self.channels:
            raise IndexError(f"unit {unit} out of range 0..{self.channels - 1}")
        r, c = divmod(unit, self.cols)
        return r * (self.tile_h + self.pad), c * (self.tile_w + self.pad)

    def unit_at(self, y: float, x: float) -> int | None:
        """The unit whose tile contains mosaic pixel (y, x); None on padding or outside."""
        if y < 0 or x < 0:
            return None
        r, ry = divmod(int(y), self.tile_h + self.pad)
        c, rx = divmod(int(x), self.tile_w + self.pad)
        if ry >= self.tile_h or rx >= self.tile_w or r >= self.rows or c >= self.cols:
            return None
        unit = r * self.cols + c
        return unit if unit < self.channels else None

    def neighbour(self, unit: int, drow: int, dcol: int) -> int:
        """The unit `drow` rows and `dcol` columns away, clamped to the grid."""
        r, c = divmod(unit, self.cols)
        if dcol:
            return min(max(unit + dcol, 0), self.channels - 1)
        r2 = r + drow
        candidate = r2 * self.cols + c
        if r2 < 0 or candidate >= self.channels:
            return unit
        return candidate


def grid_geometry(
    channels: int, tile_h: int, tile_w: int, pad: int = 1, aspect: float = 1.0
) -> GridGeometry:
    """Choose rows × cols so the mosaic is close to `aspect` (width / height)."""
    if channels <= 0 or tile_h <= 0 or tile_w <= 0:
        raise ValueError(f"cannot tile {channels} channels of {tile_h}x{tile_w}")
    # cols·(tile_w+pad) / (rows·(tile_h+pad)) ≈ aspect with rows·cols ≈ channels
    ratio = aspect * (tile_h + pad) / (tile_w + pad)
    cols = max(1, min(channels, round(math.sqrt(channels * ratio))))
    rows = math.ceil(channels / cols)
    # drop columns that the last row leaves unused when that does not add a row
    while cols > 1 and math.ceil(channels / (cols - 1)) == rows:
        cols -= 1
    return GridGeometry(channels, rows, cols, tile_h, tile_w, pad)


def normalize_channels(acts: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """Scale (C, H, W) activations to uint8 0..255 by each channel's or the layer's range.

    A constant map becomes 0 rather than dividing by zero.
    """
    a = np.asarray(acts, dtype=np.float32)
    if per_channel:
        lo = a.min(axis=(1, 2), keepdims=True)
        hi = a.max(axis=(1, 2), keepdims=True)
    else:
        lo, hi = a.min(), a.max()
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return np.clip((a - lo) / span * 255.0 + 0.5, 0, 255).astype(np.uint8)
