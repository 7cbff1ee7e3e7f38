"""The activation atlas as the window gets it: its cells, and the atlas they make.

Apart from `messages` (which holds what every part of the window exchanges) because an
atlas is one feature's own message: the session's atlas jobs send it, the Atlas tab shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class AtlasCell:
    """One populated cell of an activation atlas: where it is, how many samples it holds,
    the class its direction most supports, and its icon (its direction's feature
    visualisation; None while not rendered)."""

    x: int
    y: int
    count: int
    label: str
    score: float
    icon: np.ndarray | None = None  # (h, w, 3) uint8
    icon_path: str = ""
    # its most typical samples' image regions, (s, s, 3) uint8 each, best first
    examples: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True, eq=False)
class AtlasReady:
    """An activation atlas of `layer`: `grid` × `grid` cells, the populated ones in
    `cells`; cell i is unit i of the direction layer `direction_layer`, stored in
    `directions_folder` (what the live placement reads)."""

    layer: str
    grid: int
    cells: tuple[AtlasCell, ...]
    direction_layer: str
    directions_folder: str
    picture: str  # atlas.png
    images: int  # the folder's images it was made from
    icons_done: bool = True  # False: a first look while the icons render

    def labels(self) -> tuple[str, ...]:
        """The classes its cells support, most cells first (ties by name)."""
        counts: dict[str, int] = {}
        for c in self.cells:
            counts[c.label] = counts.get(c.label, 0) + 1
        return tuple(sorted(counts, key=lambda k: (-counts[k], k)))
