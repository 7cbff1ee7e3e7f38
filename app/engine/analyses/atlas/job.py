"""`build_atlas`: the job that makes a layer's activation atlas from a folder of images.

Stages, each timed (`Atlas.seconds`): collecting P vectors per image and the logit
gradients (`collect`), the UMAP layout and the binning (`grid`), the labels. Icons are not
made here — feature visualisation is another analysis, and analyses do not import each
other: the command renders them with the app's renderer and writes them beside the atlas.

A finished atlas lives in one folder, keyed by the model key (model, weights,
preprocessing), the folder's listing fingerprint, the layer, P, N, the minimum density, the
seed and the frame size; `meta.json` is written last, so its presence means the folder is
complete, and a second run returns it at once (`cached`). The cells are also written as a
linear direction set (`write_cell_directions`: the layer `LAYER@atlasN`, one unit per cell,
under the cache's `directions/`), so the live view, the unit card, rendering and deletion
take a cell as they take any unit. Everything is written atomically
and read back with `allow_pickle=False`: samples.npz (the kept vectors, their images and
layout), directions.npy (cells × C, in cells.json order), gradient.npz (the labels' classes
and their J rows).

Resumable: the collection checkpoints its rows every `checkpoint_every` batches, when
cancelled and when done (`collect.collect_rows`), under `.partial/<run key>/` in the atlas's
folder — the run key hashes the atlas's key, the batch size and (under torchrun) the rank
and world, so a checkpoint of another run is never read. A killed or cancelled run goes on
after its last checkpoint, one killed while laying out does not collect again, and either
ends with the atlas an uninterrupted run makes (a row depends on its image and the seed
only); the checkpoint is removed once the atlas is written. `resume=False` throws this
run's checkpoint and the finished atlas away.

Under torchrun (`ranks`) each rank collects the single-process run's batches rank,
rank + N, … (`Ranks.positions`: every batch holds the images it holds in one process) and
checkpoints them in its own folder; rank 0 gathers the parts, orders the rows by image
(exactly the one-process order), takes the logit gradients, lays out, bins, labels and
writes, then sends the atlas (less its samples) to the others, which only then drop their
checkpoints. A rank that fails stops them all with its message (`Ranks.fail`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from app.core.atomic import atomic_write, atomic_write_json, atomic_write_npz
from app.core.files import files_fingerprint, safe_filename
from app.core.jobs import Job
from app.engine.analyses.atlas.collect import (
    AtlasProgress,
    Collected,
    batches,
    collect_rows,
    logit_jacobian,
    private_copy,
    recorder_for,
)
from app.engine.analyses.atlas.grid import Grid, bin_layout, locate, umap_layout
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key
from app.engine.runtime.dataset_pass import folder_images, layer_map_shape
from app.engine.runtime.directions import (
    direction_layer_name,
    load_direction_set,
    write_direction_set,
)
from app.engine.runtime.distributed import Ranks, failing_together
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import discover_layers

ATLAS_FORMAT = 1


class AtlasError(ValueError):
    """An atlas that cannot be built (no images, unknown layer, bad sizes); one line."""


@dataclass(frozen=True)
class Cell:
    x: int
    y: int
    count: int
    label: str  # the class its direction most supports (module `collect`'s J)
    score: float  # J[label] · direction

    def doc(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "count": self.count, "label": self.label,
                "score": round(self.score, 6)}


@dataclass(frozen=True)
class Atlas:
    layer: str
    grid: int
    per_image: int
    cells: tuple[Cell, ...]
    directions: np.ndarray  # (M, C), in `cells` order
    samples: np.ndarray  # (n, C) the collected vectors
    cell_of: np.ndarray  # (n,) each sample's cell index, -1 if its cell is sparse
    folder: Path
    images: int
    skipped: tuple[tuple[str, str], ...]
    cached: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    key: str = ""  # what its inputs hash to: names its folder and its direction set's
    seed: int = 0  # of the sampled positions (`collect.positions_of`) and the layout
    cells_folder: Path | None = None  # its cells' direction set (`build_atlas` sets it)

    def grid_view(self) -> Grid:
        cells = np.array([[c.x, c.y] for c in self.cells], dtype=np.int64).reshape(-1, 2)
        counts = np.array([c.count for c in self.cells], dtype=np.int64)
        return Grid(self.grid, cells, counts, self.directions, self.cell_of,
                    np.zeros((self.cell_of.shape[0], 2)))

    def locate(self, vectors: np.ndarray) -> list[dict[str, int]]:
        """Where (q, C) activation vectors fall: [{x, y, positions}], most positions first."""
        hits = locate(self.grid_view(), self.samples, vectors)
        ids, counts = np.unique(hits[hits >= 0], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return [{"x": self.cells[int(ids[i])].x, "y": self.cells[int(ids[i])].y,
                 "positions": int(counts[i])} for i in order]


def atlas_root(cache_dir: str, loaded: LoadedModel, layer: str) -> Path:
    return cache_root(cache_dir) / "atlas" / model_key(loaded) / safe_filename(layer)


def label_cells(directions: np.ndarray, class_ids: np.ndarray, jacobian: np.ndarray,
                class_names: Sequence[str]) -> list[tuple[str, float]]:
    """(label, score) per direction: the candidate class with the largest J · direction."""
    if directions.shape[0] == 0:
        return []
    scores = directions.astype(np.float64) @ jacobian.astype(np.float64).T  # (M, T)
    best = np.argmax(scores, axis=1)
    return [(class_names[int(class_ids[b])], float(scores[i, b])) for i, b in enumerate(best)]


def build_atlas(
    loaded: LoadedModel, dataset: str | Path, layer: str, *, grid: int = 20,
    per_image: int = 16, min_count: int = 3, seed: int = 0, batch_size: int = 16,
    gradient_images: int = 16, cache_dir: str = "", out: str | Path | None = None,
    max_pixels: int = 80_000_000, max_side: int = 1280, resume: bool = True,
    checkpoint_every: int = 10, ranks: Ranks | None = None, keep_partial: bool = True,
) -> Job[AtlasProgress, Atlas]:
    """The atlas of `layer` over the images under `dataset` (module doc).

    `checkpoint_every`: batches between two checkpoints of the collection. With `ranks`
    (torchrun) each rank collects its batches, rank 0 lays out, labels and writes; the other
    ranks return the atlas without its samples. `keep_partial=False`: a cancelled or failed
    run leaves no checkpoint (for a folder that will not be there to resume on: the frames
    a session kept)."""
    started = time.perf_counter()
    for what, value in (("the grid size", grid), ("the vectors per image", per_image),
                        ("the minimum density", min_count), ("the batch size", batch_size),
                        ("the checkpoint interval", checkpoint_every)):
        if value <= 0:
            raise AtlasError(f"{what} must be positive, got {value}")
    root, files = folder_images(dataset, AtlasError)
    shape, clone = layer_map_shape(loaded, layer, AtlasError)
    channels = int(shape[0])
    key = hashlib.sha256(json.dumps([
        CACHE_FORMAT, ATLAS_FORMAT, model_key(loaded), layer, files_fingerprint(files),
        per_image, grid, min_count, seed, gradient_images, max_side, max_pixels,
    ]).encode()).hexdigest()[:16]
    folder = (Path(out) if out is not None
              else atlas_root(cache_dir, loaded, layer) / f"atlas-{key}")
    # with --out nothing goes in the cache: the set sits beside the atlas, out of the live view
    cells_dir = (folder / "cells" if out is not None
                 else cell_directions_folder(cache_dir, loaded, layer, grid, key))
    root_here = ranks is None or ranks.is_root
    if ranks is not None:  # before anything is read from or written to the cache
        ranks.agree({"model weights": model_key(loaded), "dataset listing":
                     f"{len(files)} files under {root} ({files_fingerprint(files)})",
                     "layer": layer, "grid": grid, "per image": per_image,
                     "min count": min_count, "seed": seed, "gradient images": gradient_images,
                     "batch size": batch_size, "max pixels": max_pixels, "max side": max_side})
    found = load_atlas(folder, key) if resume and root_here else None
    if ranks is not None:  # rank 0's folder decides: on other hosts it is not there
        sent = ranks.broadcast(None if found is None else _without_samples(found))
        found = found if ranks.is_root else sent
    if found is not None:
        if root_here:
            write_cell_directions(found, cells_dir)  # one made before the sets were
        return replace(found, cached=True, cells_folder=cells_dir)
    if not resume and root_here:
        (folder / "meta.json").unlink(missing_ok=True)

    # -- collect: each rank its batches of the single-process run, checkpointed -------------
    t0 = time.perf_counter()
    todo = list(range(len(files))) if ranks is None else ranks.positions(len(files), batch_size)
    ckpt = folder / ".partial" / _run_key(key, batch_size, ranks)
    try:
        atlas = yield from _collect_and_finish(
            loaded, files, root, todo, layer, clone, channels, ckpt, key, folder, cells_dir,
            t0, started, ranks, grid=grid, per_image=per_image, min_count=min_count,
            seed=seed, batch_size=batch_size, gradient_images=gradient_images,
            max_pixels=max_pixels, max_side=max_side, checkpoint_every=checkpoint_every,
            resume=resume)
    except BaseException:
        if not keep_partial:
            _drop_checkpoint(folder, ckpt)
            with contextlib.suppress(OSError):
                folder.rmdir()  # nothing else was written for this run
        raise
    return atlas


def _collect_and_finish(
    loaded: LoadedModel, files: list[str], root: Path, todo: list[int], layer: str,
    clone: set[str], channels: int, ckpt: Path, key: str, folder: Path, cells_dir: Path,
    t0: float, started: float, ranks: Ranks | None, *, grid: int, per_image: int,
    min_count: int, seed: int, batch_size: int, gradient_images: int, max_pixels: int,
    max_side: int, checkpoint_every: int, resume: bool,
) -> Job[AtlasProgress, Atlas]:
    """`build_atlas` from the collection on: its rows (checkpointed), then the atlas."""
    with failing_together(ranks):
        got = yield from collect_rows(
            loaded, files, todo, layer, layer in clone, channels, ckpt, per_image=per_image,
            seed=seed, batch_size=batch_size, max_pixels=max_pixels, max_side=max_side,
            checkpoint_every=checkpoint_every, resume=resume)
    if ranks is not None:
        parts = ranks.gather(got)
        if parts is None:  # rank 0 lays out and writes; this part is kept until it has
            ranks.check()
            _drop_checkpoint(folder, ckpt)
            atlas: Atlas = ranks.broadcast(None)
            return atlas
        got = _merge(parts, files)
    with failing_together(ranks):
        atlas = yield from _finish(
            loaded, files, root, got, layer, key, folder, cells_dir, t0, started, grid=grid,
            per_image=per_image, min_count=min_count, seed=seed, batch_size=batch_size,
            gradient_images=gradient_images, channels=channels, max_pixels=max_pixels,
            max_side=max_side)
    if ranks is not None:
        ranks.check()
        ranks.broadcast(_without_samples(atlas))
    _drop_checkpoint(folder, ckpt)
    return atlas


def _without_samples(atlas: Atlas) -> Atlas:
    """What rank 0 sends the other ranks: the atlas less its samples (P × C per image of the
    folder, which only rank 0, placing, drawing and cutting examples, needs)."""
    channels = int(atlas.samples.shape[1]) if atlas.samples.ndim == 2 else 0
    return replace(atlas, samples=np.zeros((0, channels), np.float32),
                   cell_of=np.zeros(0, np.int64))


def _run_key(key: str, batch_size: int, ranks: Ranks | None) -> str:
    """A checkpoint's folder: the atlas's inputs, and which batches this process takes."""
    doc: list[Any] = [key, batch_size]
    if ranks is not None:
        doc += ["rank", ranks.rank, ranks.world]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def _drop_checkpoint(folder: Path, ckpt: Path) -> None:
    shutil.rmtree(ckpt, ignore_errors=True)
    with contextlib.suppress(OSError):
        (folder / ".partial").rmdir()  # only when no other run's checkpoint is in it


def _merge(parts: Sequence[Collected], files: Sequence[str]) -> Collected:
    """The ranks' parts as one process collects them: rows by image (an image is one
    rank's, its rows in position order, so a stable sort by image is exact), skipped files
    in listing order."""
    owner = np.concatenate([p.owner for p in parts])
    order = np.argsort(owner, kind="stable")
    rows = np.concatenate([p.rows for p in parts])[order]
    index = {f: i for i, f in enumerate(files)}
    skipped = sorted((s for p in parts for s in p.skipped), key=lambda s: index.get(s[0], -1))
    return Collected(rows, owner[order], sum(p.images for p in parts), tuple(skipped))


def _finish(
    loaded: LoadedModel, files: Sequence[str], root: Path, got: Collected, layer: str,
    key: str, folder: Path, cells_dir: Path, t0: float, started: float, *, grid: int,
    per_image: int, min_count: int, seed: int, batch_size: int, gradient_images: int,
    channels: int, max_pixels: int, max_side: int,
) -> Job[AtlasProgress, Atlas]:
    """The gradient, layout, bins and labels of the collected rows; writes the atlas."""
    if got.images == 0:
        raise AtlasError(f"none of the {len(files)} images under {root} could be read")
    samples, owner = got.rows, got.owner
    t1 = time.perf_counter()
    # the first G images read, grouped by the batch each was read in (the sums of J are
    # per batch, as they always were)
    first = np.unique(owner)[:gradient_images]
    groups = [[int(i) for i in first if int(i) // batch_size == b]
              for b in dict.fromkeys(int(i) // batch_size for i in first)]
    model = private_copy(loaded)
    class_rows: dict[int, np.ndarray] = {}
    n_grad = 0
    for k, group in enumerate(groups):
        yield AtlasProgress(done=k, total=len(groups), stage="gradient")
        unread: list[tuple[str, str]] = []
        for _, x in batches(loaded, [files[i] for i in group], len(group), max_pixels,
                            max_side, unread):
            if x.numel():
                ids_k, jac = logit_jacobian(model, layer, x, channels)
                n_grad += int(x.shape[0])
                for c, row in zip(ids_k, jac, strict=True):
                    class_rows[int(c)] = class_rows.get(int(c), 0) + row
    del model
    class_ids = np.array(sorted(class_rows), dtype=np.int64)
    jacobian = (np.stack([class_rows[int(c)] / max(1, n_grad) for c in class_ids])
                .astype(np.float32) if class_rows else np.zeros((0, channels), np.float32))
    t2 = time.perf_counter()

    # -- layout and grid ------------------------------------------------------------------
    if samples.shape[0] < 4:
        raise AtlasError(f"only {samples.shape[0]} activation vectors: too few for a layout "
                         "(more images or a larger --per-image)")
    yield AtlasProgress(done=0, total=1, stage="layout")
    xy = umap_layout(samples, seed)
    binned = bin_layout(samples, xy, grid, min_count)
    yield AtlasProgress(done=1, total=1, stage="layout")
    t3 = time.perf_counter()
    labels = label_cells(binned.directions, class_ids, jacobian, loaded.class_names)
    cells = tuple(Cell(int(c[0]), int(c[1]), int(n), lab, sc) for c, n, (lab, sc)
                  in zip(binned.cells, binned.counts, labels, strict=True))
    seconds = {"collect": t1 - t0, "gradient": t2 - t1, "layout": t3 - t2}
    seconds["total"] = time.perf_counter() - started
    atlas = Atlas(layer, grid, per_image, cells, binned.directions, samples, binned.cell_of,
                  folder, got.images, got.skipped, seconds=seconds, key=key, seed=seed,
                  cells_folder=cells_dir)
    write_atlas(atlas, key, owner, xy, class_ids, jacobian, files)
    write_cell_directions(atlas, cells_dir)
    return atlas


def atlas_tag(grid: int) -> str:
    return f"atlas{grid}"


def cell_name(cell: Cell) -> str:
    """A cell's unit name in its direction layer: where it sits and what it supports."""
    return f"cell ({cell.x},{cell.y}): {cell.label}"


def cell_directions_folder(cache_dir: str, loaded: LoadedModel, layer: str, grid: int,
                           key: str) -> Path:
    return (cache_root(cache_dir) / "directions" / model_key(loaded) / safe_filename(layer)
            / f"{atlas_tag(grid)}-{key}")


def write_cell_directions(atlas: Atlas, folder: Path) -> Path:
    """The cells as a linear direction set in `folder`, the layer `LAYER@atlasN` (unit i:
    cell i, named by `cell_name`), so every view takes a cell as a unit. Written once: a set
    already there (whose units the user may have renamed) is left as it is."""
    found = load_direction_set(folder)
    if found is not None and found.k == len(atlas.cells):
        return folder
    name = direction_layer_name(atlas.layer, atlas_tag(atlas.grid))
    write_direction_set(folder, atlas.directions, [cell_name(c) for c in atlas.cells], {
        "kind": "linear", "source_layer": atlas.layer, "direction_layer": name,
        "atlas": str(atlas.folder), "atlas_key": atlas.key, "grid": atlas.grid,
        "cells": [[c.x, c.y] for c in atlas.cells]})
    return folder


def write_atlas(atlas: Atlas, key: str, owner: np.ndarray, xy: np.ndarray, class_ids: np.ndarray,
                jacobian: np.ndarray, files: Sequence[str]) -> None:
    folder = atlas.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # incomplete until rewritten

    def write_npy(f: IO[bytes]) -> None:
        np.save(f, np.ascontiguousarray(atlas.directions, dtype=np.float32), allow_pickle=False)

    atomic_write(folder / "directions.npy", write_npy)
    atomic_write_npz(folder / "samples.npz", {"samples": atlas.samples, "owner": owner,
                                               "xy": xy, "cell_of": atlas.cell_of})
    atomic_write_npz(folder / "gradient.npz", {"classes": class_ids, "jacobian": jacobian})
    atomic_write_json(folder / "cells.json", [{**c.doc(), "icon": None} for c in atlas.cells])
    atomic_write_json(folder / "meta.json", {
        "format": ATLAS_FORMAT, "key": key, "layer": atlas.layer, "grid": atlas.grid,
        "per_image": atlas.per_image, "seed": atlas.seed, "images": atlas.images,
        "skipped": [list(s) for s in atlas.skipped], "seconds": atlas.seconds,
        "files": [Path(os.path.abspath(f)).as_posix() for f in files]})


def latest_atlas(cache_dir: str, loaded: LoadedModel, layer: str) -> Atlas | None:
    """The newest complete atlas of `layer` in the cache (any inputs), or None."""
    metas = sorted(atlas_root(cache_dir, loaded, layer).glob("atlas-*/meta.json"),
                   key=_mtime, reverse=True)
    return next((a for a in (load_atlas(m.parent) for m in metas) if a is not None), None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def load_atlas(folder: Path, key: str | None = None) -> Atlas | None:
    """The complete atlas in `folder` (made with the inputs `key` names, when given), or None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != ATLAS_FORMAT or (key is not None and meta.get("key") != key):
            return None
        docs = json.loads((folder / "cells.json").read_text())
        directions = np.load(folder / "directions.npy", allow_pickle=False)
        with np.load(folder / "samples.npz", allow_pickle=False) as z:
            samples, cell_of = z["samples"], z["cell_of"]
        cells = tuple(Cell(int(d["x"]), int(d["y"]), int(d["count"]), str(d["label"]),
                           float(d["score"])) for d in docs)
        if len(cells) != directions.shape[0]:
            return None
        return Atlas(str(meta["layer"]), int(meta["grid"]), int(meta["per_image"]), cells,
                     directions, samples, cell_of, folder, int(meta["images"]),
                     tuple((str(p), str(r)) for p, r in meta["skipped"]),
                     seconds=dict(meta["seconds"]), key=str(meta["key"]),
                     seed=int(meta.get("seed", 0)))  # older atlases: the default seed
    except (OSError, ValueError, KeyError, TypeError):
        return None


def locate_images(loaded: LoadedModel, atlas: Atlas, paths: Sequence[str], *,
                  max_pixels: int = 80_000_000, max_side: int = 1280
                  ) -> list[dict[str, Any]]:
    """Per image: every position of its map at the atlas's layer, placed on the atlas."""
    out: list[dict[str, Any]] = []
    _, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    rec, forward, unhook = recorder_for(loaded, atlas.layer, atlas.layer in clone)
    try:
        with torch.no_grad():
            for path in paths:
                skipped: list[tuple[str, str]] = []
                got = list(batches(loaded, [path], 1, max_pixels, max_side, skipped))
                if skipped or not got or not got[0][0]:
                    reason = skipped[0][1] if skipped else "unreadable"
                    raise AtlasError(f"cannot read {path}: {reason}")
                rec.run(got[0][1], forward)
                acts = rec.activations[atlas.layer].detach().float()[0]
                vectors = acts.reshape(acts.shape[0], -1).T.cpu().numpy()
                out.append({"image": str(path), "cells": atlas.locate(vectors)})
    finally:
        unhook()
        rec.remove()
    return out
