"""Top-k dataset patches per unit: the result types, the on-disk format, exact merging.

Pure numpy + stdlib, so the GUI can read scan results without torch. The torch side that
produces them is `app.engine.analyses.patches.dataset_scan`.

Order. Every ranking in this module and in the scan is by (value descending, path
ascending), path compared as a string of the absolute POSIX path. Ties are therefore
deterministic, and the top-k of a union of disjoint datasets is exactly the top-k of the
union of their top-k lists: that is what makes resuming and `--merge` exact.

A scan folder holds one folder per layer (`layer_dirname`), each with the files below. In
the cache each scanned dataset has its own scan folder, `dataset_scan_dir` (keyed by a
digest of the dataset's absolute path), so scanning folder B never replaces folder A's top
patches; `load_scan` answers with the newest complete scan of the layer, `scans_of` lists
them all. A layer folder straight under `scan_dir` (the layout before datasets had their
own) is still read, as one more scan, and never deleted.

- `topk.npz`: `values` (C, k) float32 (−inf for an empty slot), `file_index` (C, k) int32 index
  into `paths` (−1: empty), `y`, `x` (C, k) int32 location of the unit's maximum in its
  feature map, `box` (C, k, 4) int32 receptive-field box (y0, x0, y1, x1), half-open, in
  the image file's own pixels, `model_box` the same box in model-input pixels, `token`.
- `crops.npy`: (C, k, S, S, 3) uint8 receptive-field crops, letterboxed, opened memory-mapped.
- `result.json`: everything else (written last: the commit marker; its `token` must
  match the arrays', so a crash between the writes is detected, never half-read).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.atomic import cache_write_json, cache_write_npz, refuse_empty
from app.core.files import safe_filename

SCAN_FORMAT = 1  # bump when the files below change layout
EMPTY = -1  # file index of an empty slot (fewer images than k)


def layer_dirname(layer: str) -> str:
    """A folder name for a layer's dotted name (`name:1` for a second call becomes `name@1`)."""
    return safe_filename(layer)


def scan_dir(cache_root: str | Path, model_key: str) -> Path:
    """Where the scans of one model live inside the cache."""
    return Path(cache_root) / model_key / "scan"


DATASETS_DIRNAME = "datasets"  # under `scan_dir`: one scan folder per scanned dataset


def dataset_scan_dir(cache_root: str | Path, model_key: str, dataset_root: str) -> Path:
    """The scan folder of one dataset (`dataset_root`: its absolute POSIX path)."""
    digest = hashlib.sha256(dataset_root.encode("utf-8")).hexdigest()[:16]
    return scan_dir(cache_root, model_key) / DATASETS_DIRNAME / digest


@dataclass(frozen=True)
class ScanInfo:
    """One stored scan of a layer: which dataset, how many images, when it was written."""

    folder: Path  # the layer folder (`load_scan_folder` reads it)
    dataset: str  # the dataset's absolute path (several, comma-separated, for a merge)
    images: int  # images scanned
    saved_at: float  # seconds since the epoch


@dataclass(frozen=True)
class Entry:
    """One of a unit's top images: where, how strongly, and which region of it."""

    rank: int
    path: str
    value: float
    y: int  # location of the unit's maximum in the feature map
    x: int
    box: tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open, image's own pixels
    model_box: tuple[int, int, int, int]  # the same in model-input pixels


@dataclass(frozen=True, eq=False)
class ScanResult:
    """Top-k of every unit of one layer; arrays as described in the module docstring."""

    folder: Path
    meta: dict[str, Any]
    paths: tuple[str, ...]
    values: np.ndarray
    file: np.ndarray
    y: np.ndarray
    x: np.ndarray
    box: np.ndarray
    model_box: np.ndarray
    _crops: list[np.ndarray] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return (f"ScanResult({self.layer!r}, units={self.units}, top_k={self.top_k}, "
                f"folder={str(self.folder)!r})")

    @property
    def layer(self) -> str:
        return str(self.meta["layer"])

    @property
    def units(self) -> int:
        return int(self.values.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.values.shape[1])

    @property
    def dataset(self) -> str:
        """The scanned dataset's absolute path (a merge's several, comma-separated)."""
        return _dataset_of(self.meta)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(p, r) for p, r in self.meta.get("skipped", [])]

    def top(self, unit: int) -> list[Entry]:
        """The unit's entries, best first (empty slots left out)."""
        out = []
        for r in range(self.top_k):
            f = int(self.file[unit, r])
            if f == EMPTY:
                break
            out.append(Entry(r, self.paths[f], float(self.values[unit, r]),
                             int(self.y[unit, r]), int(self.x[unit, r]),
                             _box(self.box[unit, r]), _box(self.model_box[unit, r])))
        return out

    @property
    def crops(self) -> np.ndarray:
        """(C, k, S, S, 3) uint8, memory-mapped: reading one unit touches only its crops."""
        if not self._crops:
            self._crops.append(np.load(self.folder / "crops.npy", mmap_mode="r"))
        return self._crops[0]

    def unit_crops(self, unit: int) -> np.ndarray:
        """(n, S, S, 3) uint8 crops of the unit's `top(unit)` entries, best first."""
        n = int((self.file[unit] != EMPTY).sum())
        return np.array(self.crops[unit, :n])


def _box(row: np.ndarray) -> tuple[int, int, int, int]:
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _dataset_of(meta: dict[str, Any]) -> str:
    roots = [str(d.get("root", "")) for d in meta.get("datasets", []) if isinstance(d, dict)]
    return ", ".join(dict.fromkeys(r for r in roots if r))


def scans_of(root: str | Path, model_key: str, layer: str) -> list[ScanInfo]:
    """The complete scans of `layer` under a cache root, one per dataset, newest first."""
    top = scan_dir(root, model_key)
    name = layer_dirname(layer)
    folders = [top / name]
    with contextlib.suppress(OSError):  # none scanned since datasets got their own folders
        folders += sorted(d / name for d in (top / DATASETS_DIRNAME).iterdir() if d.is_dir())
    out = []
    for folder in folders:
        try:
            doc = folder / "result.json"
            meta = json.loads(doc.read_text(encoding="utf-8"))
            if meta.get("format") != SCAN_FORMAT or not meta.get("complete"):
                continue
            # results written before `saved_at` existed: the file's own time
            saved = float(meta.get("saved_at") or doc.stat().st_mtime)
            out.append(ScanInfo(folder, _dataset_of(meta), int(meta.get("files_scanned", 0)),
                                saved))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return sorted(out, key=lambda i: (-i.saved_at, str(i.folder)))


def load_scan(root: str | Path, model_key: str, layer: str) -> ScanResult | None:
    """The newest finished scan of `layer` under a cache root, or None (none, stale, torn)."""
    for info in scans_of(root, model_key, layer):
        result = load_scan_folder(info.folder)
        if result is not None:  # a torn newest one: the one before it
            return result
    return None


def load_scan_folder(folder: str | Path) -> ScanResult | None:
    """The scan result stored in one layer folder, or None where there is no usable one."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        if meta.get("format") != SCAN_FORMAT or not meta.get("complete"):
            return None
        with np.load(folder / "topk.npz") as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None
    if str(arrays.get("token")) != meta.get("token"):
        return None  # arrays and metadata from different writes
    return ScanResult(folder, meta, tuple(meta["paths"]), arrays["values"], arrays["file_index"],
                      arrays["y"], arrays["x"], arrays["box"], arrays["model_box"])


def save_scan_result(folder: str | Path, meta: dict[str, Any], paths: Sequence[str],
                     arrays: dict[str, np.ndarray],
                     write_crops: Callable[[Path], None]) -> Path:
    """Write one layer's result atomically: arrays, crops (via `write_crops(path)`), json.

    A result of no image (`meta["files_scanned"]` 0) is refused (`EmptyResult`) before the
    folder is touched: the layer's earlier scan stays (the cache's rule, `app.core.atomic`).
    """
    what = f"scan of {meta.get('layer', Path(folder).name)}"
    refuse_empty(int(meta.get("files_scanned", 0)), what)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    # Rank order of the stored arrays must be the canonical one; paths sorted for merges.
    doc = dict(meta, format=SCAN_FORMAT, token=token, paths=list(paths), complete=True,
               saved_at=time.time())
    (folder / "result.json").unlink(missing_ok=True)  # invalid while the arrays change
    items = int(meta["files_scanned"])
    cache_write_npz(folder / "topk.npz", {"token": np.array(token), **arrays}, items=items,
                    what=what)
    write_crops(folder / "crops.npy")
    cache_write_json(folder / "result.json", doc, items=items, what=what)
    return folder


# -- exact merging ------------------------------------------------------------------------------


def rank_order(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per-row indices sorting (C, n) candidates by (value desc, key asc); empties last.

    `keys` are integers whose order is the path order (EMPTY for empty slots).
    """
    v = np.where(keys == EMPTY, -np.inf, values.astype(np.float64))
    v = np.nan_to_num(v, nan=-np.inf)
    k = np.where(keys == EMPTY, np.iinfo(np.int64).max, keys.astype(np.int64))
    empty = (keys == EMPTY).astype(np.int8)
    # lexsort: the last key is the primary one
    return np.lexsort((k, -v, empty), axis=-1)


def merge_candidates(values: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """(C, n) candidates → (C, k) column indices of each row's top-k (−1: empty slot).

    A key appearing twice in a row (the same image in two overlapping parts) counts once,
    at its better rank.
    """
    order = rank_order(values, keys)
    ranked = np.take_along_axis(keys, order, axis=1)
    by_key = np.argsort(ranked, axis=1, kind="stable")  # equal keys keep rank order
    sk = np.take_along_axis(ranked, by_key, axis=1)
    later = (sk[:, 1:] == sk[:, :-1]) & (sk[:, 1:] != EMPTY)
    if later.any():
        rows, cols = np.nonzero(later)
        dup_rank_pos = by_key[rows, cols + 1]
        keys = keys.copy()
        keys[rows, order[rows, dup_rank_pos]] = EMPTY
        order = rank_order(values, keys)
    chosen = order[:, :k]
    if chosen.shape[1] < k:  # fewer candidates than k: pad with empty columns
        pad = np.full((chosen.shape[0], k - chosen.shape[1]), -1, dtype=chosen.dtype)
        chosen = np.concatenate([chosen, pad], axis=1)
    chosen_keys = np.take_along_axis(keys, np.maximum(chosen, 0), axis=1)
    return np.where((chosen < 0) | (chosen_keys == EMPTY), -1, chosen)


def merge_results(results: Sequence[ScanResult], out: str | Path) -> Path:
    """Merge scans of one layer over disjoint parts of a dataset into `out` (a layer folder).

    The merged top-k is exactly the top-k a single scan of all the parts would give.
    """
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]
    for r in results[1:]:
        for key in ("model_key", "layer", "map_shape", "crop_size", "input_size"):
            if r.meta.get(key) != first.meta.get(key):
                raise ValueError(
                    f"cannot merge {r.folder} with {first.folder}: different {key} "
                    f"({r.meta.get(key)!r} vs {first.meta.get(key)!r})")
        if r.units != first.units:
            raise ValueError(f"cannot merge {r.folder}: {r.units} units, not {first.units}")
    k = max(r.top_k for r in results)
    paths = sorted({p for r in results for p in r.paths})
    where = {p: i for i, p in enumerate(paths)}
    values, keys, src, slot = [], [], [], []
    for ri, r in enumerate(results):
        remap = np.array([where[p] for p in r.paths] + [EMPTY], dtype=np.int64)
        values.append(r.values)
        keys.append(remap[np.where(r.file == EMPTY, len(r.paths), r.file)])
        src.append(np.full(r.values.shape, ri))
        slot.append(np.broadcast_to(np.arange(r.top_k), r.values.shape))
    cand_v = np.concatenate(values, 1)
    cand_k = np.concatenate(keys, 1)
    cand_src = np.concatenate(src, 1)
    cand_slot = np.concatenate(slot, 1)
    chosen = merge_candidates(cand_v, cand_k, k)
    empty = chosen < 0
    c = np.maximum(chosen, 0)
    take = lambda a: np.take_along_axis(a, c, axis=1)  # noqa: E731
    pick_src, pick_slot = take(cand_src), take(cand_slot)
    used_keys = np.where(empty, EMPTY, take(cand_k))
    used = sorted({int(i) for i in used_keys[used_keys != EMPTY]})
    compact = {old: new for new, old in enumerate(used)}
    file_idx = np.vectorize(lambda i: compact.get(int(i), EMPTY), otypes=[np.int32])(used_keys) \
        if used_keys.size else used_keys.astype(np.int32)

    def gather(name: str, fill: float | int) -> np.ndarray:
        parts = [getattr(r, name) for r in results]
        shape = (first.units, k, *parts[0].shape[2:])
        outa = np.full(shape, fill, dtype=parts[0].dtype)
        for ri, part in enumerate(parts):
            m = (pick_src == ri) & ~empty
            u, j = np.nonzero(m)
            outa[u, j] = part[u, pick_slot[u, j]]
        return outa

    arrays = {
        "values": gather("values", -np.inf), "file_index": file_idx,
        "y": gather("y", 0), "x": gather("x", 0),
        "box": gather("box", 0), "model_box": gather("model_box", 0),
    }
    size = int(first.meta["crop_size"])

    def write_crops(path: Path) -> None:
        write_uint8_npy(path, (first.units, k, size, size, 3), lambda mm: _fill_crops(
            mm, results, pick_src, pick_slot, empty))

    skipped = [s for r in results for s in r.meta.get("skipped", [])]
    meta = {key: first.meta.get(key) for key in (
        "layer", "model", "model_key", "map_shape", "crop_size", "input_size", "rf",
        "cache_format")}
    meta.update(
        top_k=k, units=first.units,
        datasets=[d for r in results for d in r.meta.get("datasets", [])],
        files_scanned=sum(int(r.meta.get("files_scanned", 0)) for r in results),
        skipped=sorted(skipped),
    )
    return save_scan_result(out, meta, [paths[i] for i in used], arrays, write_crops)


def _fill_crops(mm: np.ndarray, results: Sequence[ScanResult], src: np.ndarray,
                slot: np.ndarray, empty: np.ndarray) -> None:
    mm[...] = 0
    for ri, r in enumerate(results):
        crops = r.crops
        for u in range(mm.shape[0]):
            js = np.nonzero((src[u] == ri) & ~empty[u])[0]
            if len(js):
                mm[u, js] = crops[u, slot[u, js]]


def write_uint8_npy(path: Path, shape: tuple[int, ...],
                    fill: Callable[[np.ndarray], None]) -> None:
    """Create a .npy of `shape` uint8 beside `path`, let `fill` write it, rename it over."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(mm)
        mm.flush()
        del mm
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

