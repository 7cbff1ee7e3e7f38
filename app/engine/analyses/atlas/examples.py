"""A cell's top dataset samples: the image regions behind its most typical members.

Each collected sample is one position of one image's map: the samples of image i are the
positions `positions_of(seed, i, H·W, P)`, in that (sorted) order, so a sample's position is
recovered from its image and its rank among that image's samples, with nothing more stored.
A cell's examples are up to k of its members, at most one per image, those whose vectors
are most aligned (cosine) with the cell's direction; each is shown as its receptive field
in the image as the model saw it (the frame downscaled as the collection did, its centre
crop, the field's box mapped back), resized to a square.

Reading images is the cost (one read per image that holds an example), so the crops are
kept beside the atlas (`examples.npz`, with the k and size that made them) and a second
look reads that file only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import cv2
import numpy as np

from app.capture.images import ImageError, downscale_to, read_image
from app.core.atomic import atomic_write_npz
from app.core.boxes import to_frame_box
from app.core.jobs import Job
from app.engine.analyses.atlas.collect import AtlasProgress, positions_of
from app.engine.analyses.atlas.grid import unit_rows
from app.engine.analyses.atlas.job import Atlas
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.receptive_field import receptive_field


def sample_positions(owner: np.ndarray, seed: int, hw: int, per_image: int) -> np.ndarray:
    """(n,) flat map position of each sample, from the image it came from (module doc)."""
    pos = np.empty(owner.shape[0], dtype=np.int64)
    for image in np.unique(owner):
        idx = np.flatnonzero(owner == image)
        pos[idx] = positions_of(seed, int(image), hw, per_image)[: idx.size]
    return pos


def top_members(directions: np.ndarray, samples: np.ndarray, cell_of: np.ndarray,
                owner: np.ndarray, k: int) -> list[list[int]]:
    """Per cell, up to `k` member samples, one per image, most aligned with its direction."""
    out: list[list[int]] = []
    for i in range(directions.shape[0]):
        members = np.flatnonzero(cell_of == i)
        cos = unit_rows(samples[members].astype(np.float32)) @ unit_rows(
            directions[i : i + 1].astype(np.float32))[0]
        chosen: list[int] = []
        images: set[int] = set()
        for j in members[np.argsort(-cos, kind="stable")]:
            if int(owner[j]) not in images:
                chosen.append(int(j))
                images.add(int(owner[j]))
            if len(chosen) == k:
                break
        out.append(chosen)
    return out


def stored_examples(atlas: Atlas, k: int, size: int) -> dict[int, list[np.ndarray]] | None:
    try:
        with np.load(atlas.folder / "examples.npz", allow_pickle=False) as z:
            crops, cells, made = z["crops"], z["cell"], z["settings"]
    except (OSError, ValueError, KeyError):
        return None
    if [int(v) for v in made] != [k, size, len(atlas.cells)]:
        return None
    out: dict[int, list[np.ndarray]] = {}
    for crop, cell in zip(crops, cells, strict=True):
        out.setdefault(int(cell), []).append(crop)
    return out


def cell_examples(loaded: LoadedModel, atlas: Atlas, k: int = 3, size: int = 64,
                  max_pixels: int = 80_000_000, max_side: int = 1280
                  ) -> Job[AtlasProgress, dict[int, list[np.ndarray]]]:
    """Cell index → up to `k` (size, size, 3) crops of its top samples (module doc); an
    image that cannot be read any more gives none."""
    stored = stored_examples(atlas, k, size)
    if stored is not None:
        return stored
    with np.load(atlas.folder / "samples.npz", allow_pickle=False) as z:
        owner = z["owner"]
    files: Sequence[str] = json.loads((atlas.folder / "meta.json").read_text())["files"]
    rf = receptive_field(loaded.module, atlas.layer, loaded.preprocess.size)
    h, w = rf.map_shape
    pos = sample_positions(owner, atlas.seed, h * w, atlas.per_image)
    chosen = top_members(atlas.directions, atlas.samples, atlas.cell_of, owner, k)
    by_image: dict[int, list[tuple[int, int]]] = {}  # image → (cell, sample)
    for cell, members in enumerate(chosen):
        for j in members:
            by_image.setdefault(int(owner[j]), []).append((cell, j))
    crops: dict[tuple[int, int], np.ndarray] = {}
    for done, (image, wanted) in enumerate(sorted(by_image.items())):
        yield AtlasProgress(done=done, total=len(by_image), stage="examples")
        try:
            frame = downscale_to(read_image(files[image], max_pixels), max_side)
        except (ImageError, OSError, IndexError):
            continue
        crop = loaded.preprocess.crop_box(*frame.shape[:2])
        for cell, j in wanted:
            y0, x0, y1, x1 = to_frame_box(rf.box(int(pos[j]) // w, int(pos[j]) % w), crop,
                                          loaded.preprocess.size, frame.shape[:2])
            crops[(cell, j)] = cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1, :3]),
                                          (size, size), interpolation=cv2.INTER_AREA)
    out = {cell: [crops[(cell, j)] for j in members if (cell, j) in crops]
           for cell, members in enumerate(chosen)}
    listed = [(cell, c) for cell, cs in out.items() for c in cs]
    atomic_write_npz(atlas.folder / "examples.npz", {
        "crops": (np.stack([c for _, c in listed]) if listed
                  else np.zeros((0, size, size, 3), np.uint8)),
        "cell": np.array([cell for cell, _ in listed], dtype=np.int64),
        "settings": np.array([k, size, len(atlas.cells)], dtype=np.int64)})
    return out
