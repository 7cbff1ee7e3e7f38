"""Unit maps kept on disk between the two passes, so the network runs over the images once.

Dissection needs every unit's threshold (pass 1, over all images) before any mask can be
tallied (pass 2). Instead of running the network a second time, pass 1 writes each batch's
raw unit maps of the dissected layers (before upsampling, in the dtype the network computed
them: float32 on the CPU) to one chunk file per batch, `NNNNNNN.npz` in the run's
checkpoint folder (`.partial/RUN/spool/`), each written atomically (temp file + rename)
before the checkpoint that counts the batch. Pass 2 then reads the maps back, image by
image, in the order it tallies them, while the loader still supplies the labels. The maps
are bitwise those the network gave pass 1, and pass 1's batches are those of the
single-process run (torchrun included), so the tallies, and hence the labels and IoUs, are
exactly those of a second forward over the same batches.

A tensor's memory layout is kept (its dimension order, e.g. channels-last), so that the
upsampling in pass 2 runs the same kernel on the same strides as on the network's output.

Disk: images × Σ C·h·w × 4 bytes for float32 (`spool_bytes`); above the budget
(`[dissect].spool_gb`) the job runs the network twice, as before. Memory stays flat: one
chunk (one batch) is held at a time. The folder goes with the checkpoint: deleted when the
job ends, or with a checkpoint that is lost or discarded. A run resumed with chunks missing
(an older run, a budget that changed) falls back to the second forward; see `job`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from app.core.atomic import atomic_write_npz


def spool_bytes(images: int, shapes: Sequence[tuple[int, ...]], item_bytes: int = 4) -> int:
    """Disk a spool of `images` images of layers with map shapes `shapes` (C, h, w) takes."""
    return images * sum(math.prod(s) for s in shapes) * item_bytes


def _dim_order(t: torch.Tensor) -> list[int]:
    """Dimensions from the outermost in memory to the innermost (stable for size-1 dims)."""
    strides = t.stride()
    return sorted(range(t.dim()), key=lambda d: (-strides[d], d))


class Spool:
    """The chunk files of one pass-1 run over `positions` (image ids) in batches of
    `batch_size`: chunk b holds the images of positions[b·size:(b+1)·size] that decoded."""

    def __init__(self, folder: Path, layers: Sequence[str], positions: Sequence[int],
                 batch_size: int) -> None:
        self.folder, self.layers, self.batch_size = folder, list(layers), batch_size
        self.where = {i: k // batch_size for k, i in enumerate(positions)}
        self.batches = math.ceil(len(positions) / batch_size)
        self._chunk = -1
        self._rows: dict[int, int] = {}
        self._maps: list[torch.Tensor] = []

    def path(self, batch: int) -> Path:
        return self.folder / f"{batch:07d}.npz"

    def complete(self, batches: int) -> bool:
        """Whether chunks 0 … batches − 1 are all on disk."""
        return all(self.path(b).is_file() for b in range(batches))

    def write(self, batch: int, ids: Sequence[int], maps: dict[str, torch.Tensor]) -> None:
        """Chunk `batch`: images `ids` with maps[layer] (N, C, h, w), layout kept."""
        arrays: dict[str, np.ndarray] = {"ids": np.asarray(ids, np.int64)}
        for k, name in enumerate(self.layers):
            t = maps[name].detach()
            order = _dim_order(t)
            arrays[f"{k}.order"] = np.asarray(order, np.int64)
            arrays[f"{k}.maps"] = t.permute(order).contiguous().cpu().numpy()
        atomic_write_npz(self.path(batch), arrays)

    def maps(self, image: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Image `image`'s maps (C, h, w) per layer, as the network gave them in pass 1."""
        chunk = self.where[image]
        if chunk != self._chunk:
            with np.load(self.path(chunk)) as z:
                self._rows = {int(i): r for r, i in enumerate(z["ids"])}
                self._maps = []
                for k in range(len(self.layers)):
                    order = [int(d) for d in z[f"{k}.order"]]
                    back = [order.index(d) for d in range(len(order))]
                    stored = torch.from_numpy(z[f"{k}.maps"]).to(device)
                    self._maps.append(stored.permute(back))
            self._chunk = chunk
        row = self._rows[image]
        return {name: self._maps[k][row] for k, name in enumerate(self.layers)}
