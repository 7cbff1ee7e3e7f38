"""Colormaps as 256-entry lookup tables, so every pane colours uint8 data the same cheap way."""

from __future__ import annotations

from functools import cache

import numpy as np
import pyqtgraph as pg

# Names match `settings.view.colormap`; the first four ship with pyqtgraph, the others are
# defined by their classic stops because pyqtgraph does not bundle them.
COLORMAP_NAMES: tuple[str, ...] = ("viridis", "inferno", "magma", "gray", "jet", "coolwarm")

_STOPS: dict[str, tuple[tuple[float, ...], tuple[tuple[int, int, int], ...]]] = {
    "gray": ((0.0, 1.0), ((0, 0, 0), (255, 255, 255))),
    "jet": (
        (0.0, 0.11, 0.125, 0.34, 0.35, 0.64, 0.65, 0.89, 0.91, 1.0),
        (
            (0, 0, 127), (0, 0, 255), (0, 0, 255), (0, 219, 255), (0, 229, 246),
            (246, 255, 0), (255, 236, 0), (255, 18, 0), (232, 0, 0), (127, 0, 0),
        ),
    ),
    "coolwarm": ((0.0, 0.5, 1.0), ((59, 76, 192), (221, 221, 221), (180, 4, 38))),
}


@cache
def lookup_table(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB table for `name`; unknown names fall back to viridis."""
    if name in _STOPS:
        positions, colors = _STOPS[name]
        cmap = pg.ColorMap(np.array(positions), np.array(colors, dtype=np.ubyte))
    else:
        cmap = pg.colormap.get(name if name in COLORMAP_NAMES else "viridis")
    lut = np.asarray(cmap.getLookupTable(0.0, 1.0, 256, alpha=False), dtype=np.uint8)
    lut.setflags(write=False)  # shared by every pane through the cache
    return lut


@cache
def overlay_table(name: str) -> np.ndarray:
    """(256, 4) uint8 RGBA table: `name`'s colours, transparent where the unit is quiet.

    A heat map over a photo reads best when only the active region is tinted; an opaque
    colormap would wash the whole crop in its low colour.
    """
    rgba = np.empty((256, 4), dtype=np.uint8)
    rgba[:, :3] = lookup_table(name)
    ramp = np.clip(np.linspace(0.0, 1.0, 256) / 0.35, 0.0, 1.0)
    rgba[:, 3] = np.round(255.0 * ramp**1.5).astype(np.uint8)
    rgba.setflags(write=False)
    return rgba


@cache
def saliency_table(name: str = "inferno") -> np.ndarray:
    """(256, 4) uint8 RGBA for attribution maps over a photo.

    Saliency is sparse (thin edges, a few hot pixels), so it gets ink sooner than a unit's
    map: fully opaque from 20 % of its range, and the dark bottom of the colormap is skipped.
    """
    rgba = np.empty((256, 4), dtype=np.uint8)
    colors = lookup_table(name)
    rgba[:, :3] = colors[np.linspace(64, 255, 256).astype(np.intp)]
    ramp = np.clip(np.linspace(0.0, 1.0, 256) / 0.2, 0.0, 1.0)
    rgba[:, 3] = np.round(255.0 * ramp**0.8).astype(np.uint8)
    rgba[0, 3] = 0
    rgba.setflags(write=False)
    return rgba
