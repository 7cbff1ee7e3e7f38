"""The atlas's geometry: a 2-D layout of activation vectors, binned into an N × N grid.

The layout is UMAP (McInnes et al., umap-learn), with the cosine metric and a fixed seed, as
the article (Carter et al., Distill 2019) and dreamlens use: it keeps a dataset's local
neighbourhoods together, which is what makes neighbouring cells similar. umap-learn is
imported inside `umap_layout` only: its first import compiles numba code for tens of seconds.

The 2-D points are scaled to the unit square and binned into N × N cells; a cell with at
least `min_count` samples (the article drops sparse cells: their mean is noise) gets the
mean of its members' activation vectors as its direction. Cells are listed row by row
(y, then x), the order of `cells.json` and `directions.npy`.

Placing a new activation vector (`locate`): its nearest collected sample by cosine, among
the samples of populated cells, and that sample's cell. A training sample is its own nearest
neighbour, so it lands in the cell that holds it; UMAP's `transform` would re-run the
optimization per query and is far too slow for a live frame, while this is one matrix
product against the kept samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Samples binned into cells: `cell_of[i]` is sample i's cell index or -1 (sparse)."""

    size: int
    cells: np.ndarray  # (M, 2) int: (x, y) of each populated cell, row by row
    counts: np.ndarray  # (M,) samples per populated cell
    directions: np.ndarray  # (M, C) float32: the mean activation of each cell's samples
    cell_of: np.ndarray  # (n,) int: index into `cells` of each sample, -1 if its cell is sparse
    xy: np.ndarray  # (n, 2) float in [0, 1]: the layout


def umap_layout(vectors: np.ndarray, seed: int, neighbours: int = 15) -> np.ndarray:
    """(n, 2) UMAP layout of (n, C) vectors, cosine metric, deterministic for a seed."""
    import umap  # lazy: numba compiles on first import

    n = vectors.shape[0]
    reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed,
                        n_neighbors=max(2, min(neighbours, n - 1)), min_dist=0.1,
                        init="spectral" if n > 3 else "random", n_jobs=1)
    return np.asarray(reducer.fit_transform(vectors.astype(np.float32)), dtype=np.float64)


def bin_layout(vectors: np.ndarray, xy: np.ndarray, size: int, min_count: int) -> Grid:
    """Bin the (n, 2) layout `xy` of `vectors` into `size` × `size` cells (module doc)."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    unit = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
    ij = np.minimum((unit * size).astype(np.int64), size - 1)
    flat = ij[:, 1] * size + ij[:, 0]  # row by row: y, then x
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    keep = counts >= min_count
    index_of = np.full(ids.shape[0], -1, dtype=np.int64)
    index_of[keep] = np.arange(int(keep.sum()))
    cell_of = index_of[inverse]
    m = int(keep.sum())
    sums = np.zeros((m, vectors.shape[1]), dtype=np.float64)
    member = cell_of >= 0
    np.add.at(sums, cell_of[member], vectors[member].astype(np.float64))
    kept_counts = counts[keep]
    directions = (sums / kept_counts[:, None]).astype(np.float32)
    cells = np.stack([ids[keep] % size, ids[keep] // size], axis=1)
    return Grid(size, cells, kept_counts, directions, cell_of, unit)


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def locate(grid: Grid, samples: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The populated cell index of each (q, C) query: its nearest kept sample's (cosine)."""
    member = np.flatnonzero(grid.cell_of >= 0)
    if member.size == 0 or queries.shape[0] == 0:
        return np.full(queries.shape[0], -1, dtype=np.int64)
    refs = unit_rows(samples[member].astype(np.float32))
    out = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], 4096):  # bounded memory for big queries
        q = unit_rows(queries[start:start + 4096].astype(np.float32))
        out[start:start + q.shape[0]] = grid.cell_of[member[np.argmax(q @ refs.T, axis=1)]]
    return out
