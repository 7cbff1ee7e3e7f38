"""A layer's cached preferred images laid out as one mosaic (the grid's "preferred images"
mode): read from the renderer's cache, resized into the tiles of a grid geometry; nothing
is rendered for it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.core.jobs import Job, Progress
from app.core.settings import RenderSettings
from app.core.tiling import GridGeometry, grid_geometry
from app.engine.analyses.featurevis import cached_unit
from app.engine.runtime.models import LoadedModel

PREFERRED_TILE = 64  # px per unit in the grid of preferred images (1,280 units: 2.3k px)
UNRENDERED = 40  # grey level of a unit with no preferred image yet


def preferred_mosaic(loaded: LoadedModel, root: Path, r: RenderSettings, layer: str,
                     channels: int, aspect: float
                     ) -> Job[Progress, tuple[np.ndarray, GridGeometry, tuple[int, ...]]]:
    """(mosaic (H, W, 3) uint8, its geometry, the units that have an image)."""
    g = grid_geometry(channels, PREFERRED_TILE, PREFERRED_TILE, pad=2, aspect=aspect)
    mosaic = np.zeros((g.height, g.width, 3), np.uint8)
    rendered = []
    for unit in range(channels):
        yield Progress(unit, channels, f"preferred images of {layer}")
        y, x = g.tile_origin(unit)
        tile = mosaic[y : y + PREFERRED_TILE, x : x + PREFERRED_TILE]
        hit = cached_unit(loaded, root, layer, unit, r.preset, r.steps or None,
                          r.size or None, r.seed)
        if hit is None:
            tile[:] = UNRENDERED
            continue
        tile[:] = cv2.resize(hit[0], (PREFERRED_TILE, PREFERRED_TILE),
                             interpolation=cv2.INTER_AREA)
        rendered.append(unit)
    return mosaic, g, tuple(rendered)
