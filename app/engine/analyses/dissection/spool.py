"""Unit maps and labels kept on disk between the two passes: the images are decoded and
run through the network once.

Dissection needs every unit's threshold (pass 1, over all images) before any mask can be
tallied (pass 2). Instead of running the network a second time, pass 1 writes each batch's
raw unit maps of the dissected layers (before upsampling, in the dtype the network computed
them: float32 on the CPU), and each image's labels and thumbnail (decoded by pass 1's
loader), to one chunk file per batch, `NNNNNNN.npz` in the run's checkpoint folder
(`.partial/RUN/spool/`), each written atomically (temp file + rename) before the checkpoint
that counts the batch. Pass 2 then reads the chunks back in order and tallies them: no
loader, no decoding. The maps are bitwise those the network gave pass 1, and pass 1's
batches are those of the single-process run (torchrun included), so the tallies, and
hence the labels and IoUs, are exactly those of a second forward over the same images. An
image whose labels could not be read is in its chunk with the reason, and the tally skips
it as a second pass would have.

A tensor's memory layout is kept (its dimension order, e.g. channels-last), so that the
upsampling in pass 2 runs the same kernel on the same strides as on the network's output.

Disk: images × (Σ C·h·w × 4 bytes for float32 + the labels' bytes) (`spool_bytes`); above
the budget (`[dissect].spool_gb`) the job runs the network twice, as before. Memory stays
flat: one chunk (one batch) is held at a time. The folder goes with the checkpoint: deleted
when the job ends, or with a checkpoint that is lost or discarded. A run resumed with chunks
missing (an older run, a budget that changed) falls back to the second forward; see `job`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.core.atomic import atomic_write_npz
from app.engine.analyses.dissection.loader import Labelled


def spool_bytes(images: int, shapes: Sequence[tuple[int, ...]], item_bytes: int = 4,
                label_bytes: int = 0) -> int:
    """Disk a spool of `images` images of layers with map shapes `shapes` (C, h, w) takes,
    with `label_bytes` of labels and thumbnail per image."""
    return images * (sum(math.prod(s) for s in shapes) * item_bytes + label_bytes)


def label_bytes(pixels: int, planes: int) -> int:
    """An image's labels in a chunk: a thumbnail (3 bytes a pixel) and up to `planes`
    int16 label planes, at `pixels` label pixels."""
    return pixels * (3 + 2 * planes)


@dataclass
class Chunk:
    """One batch of pass 1, read back: image ids, maps (N, C, h, w) per layer, and per
    image its labels, or None and the reason they could not be read."""

    ids: list[int]
    maps: dict[str, torch.Tensor]
    labels: list[Labelled | None]
    errors: list[str]


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
        self.batches = math.ceil(len(positions) / batch_size)

    def path(self, batch: int) -> Path:
        return self.folder / f"{batch:07d}.npz"

    def complete(self, batches: int) -> bool:
        """Whether chunks 0 … batches − 1 are all on disk."""
        return all(self.path(b).is_file() for b in range(batches))

    def write(self, batch: int, ids: Sequence[int], maps: dict[str, torch.Tensor],
              labels: Sequence[Labelled | None], errors: Sequence[str]) -> None:
        """Chunk `batch`: images `ids` with maps[layer] (N, C, h, w), layout kept, and
        their labels (None: unreadable, for the reason in `errors`)."""
        arrays: dict[str, np.ndarray] = {"ids": np.asarray(ids, np.int64)}
        for k, name in enumerate(self.layers):
            t = maps[name].detach()
            order = _dim_order(t)
            arrays[f"{k}.order"] = np.asarray(order, np.int64)
            arrays[f"{k}.maps"] = t.permute(order).contiguous().cpu().numpy()
        for r, (lab, error) in enumerate(zip(labels, errors, strict=True)):
            if lab is None:
                arrays[f"{r}.error"] = np.asarray(error)
                continue
            arrays.update({f"{r}.shape": np.asarray(lab.shape, np.int64), f"{r}.ids": lab.ids,
                           f"{r}.counts": lab.counts, f"{r}.inverse": lab.inverse,
                           f"{r}.annotated": lab.annotated})
            if lab.thumb is not None:
                arrays[f"{r}.thumb"] = lab.thumb
        atomic_write_npz(self.path(batch), arrays)

    def read(self, batch: int, device: torch.device) -> Chunk:
        """Chunk `batch` as pass 1 wrote it; the maps on `device`."""
        with np.load(self.path(batch)) as z:
            ids = [int(i) for i in z["ids"]]
            maps = {}
            for k, name in enumerate(self.layers):
                order = [int(d) for d in z[f"{k}.order"]]
                back = [order.index(d) for d in range(len(order))]
                maps[name] = torch.from_numpy(z[f"{k}.maps"]).to(device).permute(back)
            labels: list[Labelled | None] = []
            errors = []
            for r, i in enumerate(ids):
                if f"{r}.error" in z.files:
                    labels.append(None)
                    errors.append(str(z[f"{r}.error"]))
                    continue
                sh, sw = (int(v) for v in z[f"{r}.shape"])
                labels.append(Labelled(i, (sh, sw), z[f"{r}.ids"], z[f"{r}.counts"],
                                       z[f"{r}.inverse"], z[f"{r}.annotated"],
                                       z[f"{r}.thumb"] if f"{r}.thumb" in z.files else None))
                errors.append("")
        return Chunk(ids, maps, labels, errors)
