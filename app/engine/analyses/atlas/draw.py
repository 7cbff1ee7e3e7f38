"""The atlas as one picture: each populated cell at its grid position, sized by density.

As the article draws it: a cell's square shrinks with its sample count relative to the
densest cell (square root, so sparse cells stay visible), shaded by it when there is no
icon, the icon (the feature visualisation of its direction) scaled into it otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from app.core.atomic import atomic_write_bytes, atomic_write_json
from app.engine.analyses.atlas.job import Cell


def draw_atlas(cells: Sequence[Cell], grid: int, cell_px: int = 48,
               icons: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """(grid · cell_px)² RGB uint8; `icons`: cell index → RGB image (any size)."""
    side = grid * cell_px
    canvas = np.full((side, side, 3), 255, dtype=np.uint8)
    densest = max((c.count for c in cells), default=1)
    for i, cell in enumerate(cells):
        frac = float(np.sqrt(cell.count / densest))
        size = max(4, round(cell_px * (0.35 + 0.65 * frac)))
        x0 = cell.x * cell_px + (cell_px - size) // 2
        y0 = cell.y * cell_px + (cell_px - size) // 2
        icon = icons.get(i) if icons is not None else None
        if icon is not None:
            patch = cv2.resize(np.ascontiguousarray(icon[..., :3]), (size, size),
                               interpolation=cv2.INTER_AREA)
            canvas[y0:y0 + size, x0:x0 + size] = patch
        else:
            shade = int(220 - 180 * frac)
            canvas[y0:y0 + size, x0:x0 + size] = (shade, shade, 255 - (220 - shade) // 3)
    return canvas


def write_picture(folder: Path, cells: Sequence[Cell], grid: int,
                  icons: Mapping[int, np.ndarray] | None = None) -> Path:
    """`folder/atlas.png`, and each icon as `folder/icons/cell-I.png`, named in cells.json
    (`icon`, null where a cell has none). All written atomically."""
    names: dict[int, str] = {}
    for i, icon in (icons or {}).items():
        names[i] = f"icons/cell-{i:04d}.png"
        (folder / "icons").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / names[i], _png(icon))
    atomic_write_json(folder / "cells.json",
                      [{**c.doc(), "icon": names.get(i)} for i, c in enumerate(cells)])
    return atomic_write_bytes(folder / "atlas.png", _png(draw_atlas(cells, grid, icons=icons)))


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]),
                                                cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
