"""The top images' mask tiles, staged during the tally and made into each unit's strip.

Every (unit, rank) slot of a layer's top-k images gets one tile: the image with the unit's
mask drawn (`tally.draw_mask`), at the strip's tile size. They are staged in one array per
layer on disk (a `.npy` memory map, units × k × TILE × TILE × 3, and a filled flag per
slot), written in place as pass 2 meets each member image: a killed run leaves them in the
page cache and a resume finds them; nothing else is written per tile. One file per tile
(PNG first, raw after) cost more than the network on a small dataset: units × k opens,
writes and unlinks (2,656 for the four default layers), whatever the dataset's size.

At the end each unit's filled tiles, best first, become `unit_NNNN.png`; the PNG encodes
run on a small thread pool (OpenCV releases the GIL), and the strips are renamed into
place unsynced and made durable by one sync before the caller writes what marks the layer
done (its tally).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from app.engine.analyses.dissection.tally import TILE, draw_mask, strip

STRIP_THREADS = 2


def _tile(thumb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The drawn tile at TILE × TILE (what `strip` would resize it to)."""
    drawn = draw_mask(thumb, mask)
    if drawn.shape[:2] == (TILE, TILE):
        return drawn
    interp = cv2.INTER_AREA if max(drawn.shape[:2]) > TILE else cv2.INTER_NEAREST
    return cv2.resize(drawn, (TILE, TILE), interpolation=interp)


class TileStage:
    """One layer's staged tiles (see the module doc)."""

    def __init__(self, folder: Path, units: int, k: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.tiles = _open(folder / "tiles.npy", (units, k, TILE, TILE, 3), np.uint8)
        self.filled = _open(folder / "filled.npy", (units, k), np.bool_)

    def draw(self, thumb: np.ndarray, masks: dict[int, torch.Tensor],
             slots: list[tuple[int, int]]) -> None:
        """Stage the tiles of one member image: its (unit, rank) slots, each unit's mask
        (empty when the unit did not fire on it)."""
        empty = np.zeros(thumb.shape[:2], bool)
        for unit, rank in slots:
            mask = masks.get(unit)
            self.tiles[unit, rank] = _tile(thumb, empty if mask is None else mask.cpu().numpy())
            self.filled[unit, rank] = True

    def state(self) -> dict[str, np.ndarray]:
        """The filled slots and their tiles (what a rank sends to rank 0 under torchrun)."""
        where = np.argwhere(np.asarray(self.filled))
        return {"slots": where.astype(np.int64),
                "tiles": np.asarray(self.tiles[where[:, 0], where[:, 1]]) if len(where)
                else np.zeros((0, TILE, TILE, 3), np.uint8)}

    def absorb(self, state: dict[str, np.ndarray]) -> None:
        for (unit, rank), tile in zip(state["slots"], state["tiles"], strict=True):
            self.tiles[unit, rank] = tile
            self.filled[unit, rank] = True

    def write_strips(self, out: Path, ids: np.ndarray) -> None:
        """Each unit's filled tiles in rank order as `out/unit_NNNN.png` (renamed into place
        unsynced: the caller syncs once, see the module doc)."""
        out.mkdir(parents=True, exist_ok=True)
        filled = np.asarray(self.filled)

        def one(unit: int) -> None:
            found = [np.asarray(self.tiles[unit, r]) for r in range(ids.shape[1])
                     if filled[unit, r]]
            if found:
                _write_png(out / f"unit_{unit:04d}.png", strip(found))

        with ThreadPoolExecutor(STRIP_THREADS, thread_name_prefix="strips") as pool:
            list(pool.map(one, range(len(ids))))

    def flush(self) -> None:
        self.tiles.flush()
        self.filled.flush()


def _open(path: Path, shape: tuple[int, ...], dtype: type) -> np.memmap:
    """The staged array at `path` (a resumed run's, when it has this shape), else a new one
    of zeros (a sparse file: untouched slots take no disk)."""
    if path.is_file():
        try:
            found = np.lib.format.open_memmap(path, mode="r+")
            if found.shape == shape and found.dtype == np.dtype(dtype):
                return found
        except (OSError, ValueError):
            pass
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"PNG encoding failed for {path.name}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
