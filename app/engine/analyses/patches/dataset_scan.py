"""Dataset scan: the top-k images of every unit of some layers, with receptive-field crops.

Engine API (what the GUI and the CLI use)
-----------------------------------------

``scan(loaded, dataset, layers, top_k=9, batch_size=32, workers=2, cache_dir="", *,
out=None, shard=(0, 1), crop_size=96, checkpoint_every=20, max_pixels=80_000_000,
max_side=1280, resume=True, mp_context=None) -> Job[ScanProgress, ScanReport]``
    A job (`app.core.jobs`): drive it with ``run_job(scan(...), on_progress, cancel)``.
    Scans every image under `dataset` (recursively) and stores one result per layer in
    ``scan_dir(cache_root(cache_dir), model_key(loaded)) / layer_dirname(layer)``, or
    under `out` when given. Safe to drive from a worker thread: it yields a
    `ScanProgress` after every batch, and a cancel between two batches closes it after a
    checkpoint (`run_job` then raises `Cancelled`). Running it again resumes from the
    checkpoint and ends with exactly the result of an uninterrupted scan; running it on
    an unchanged dataset that is already scanned returns at once (``report.cached``).
    Decoding runs in `workers` DataLoader processes, forked by default; from a process
    that runs Qt threads pass ``mp_context="forkserver"`` (or "spawn") to be safe.
    Raises `ScanError` (one line, for the user) when it cannot start.

``load_scan(root, model_key, layer) -> ScanResult | None`` (from `app.core.scan_results`, no torch)
    ``root`` is ``cache_root(settings.cache.dir)``. ``ScanResult.top(unit)`` lists
    ``Entry(rank, path, value, y, x, box, model_box)`` best first, ``box`` being
    (y0, x0, y1, x1), half-open, in the image file's own pixels;
    ``ScanResult.unit_crops(unit)`` is the matching (n, S, S, 3) uint8 crops.

``merge_scans(inputs, out) -> list[Path]``
    Merges scan folders of disjoint parts of a dataset (e.g. ``--shard i/n`` runs) into
    the result of one scan of the whole.

How a batch flows: DataLoader worker processes decode (`read_image`, downscaled like a
live frame to `max_side`) and, on a CPU device, also crop/resize/normalize with the live
view's `prepare_batch`; the main process runs the model with hooks on the chosen layers
only, stopping the forward pass once the deepest of them is recorded, and merges each
layer's per-image maxima into a (units, k) top-k held on the device. Memory is
O(units × k) whatever the dataset size. The crops are cut at the end, from the files
that made some top-k, by the same workers.

Exactness: a resumed scan repeats the same batches, so it is bitwise identical to an
uninterrupted one. Shards and merges are exact on the values they are given; on a real
network a different batch grouping can change a float's last bit (BLAS blocking), which
can only swap near-ties. With batch-invariant arithmetic (the tests' integer net) a merge
of shards is bitwise the whole scan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from app.capture.images import ImageError, read_image
from app.core.atomic import atomic_write_json, atomic_write_npz
from app.core.boxes import rescale_crop, to_frame_box
from app.core.files import files_fingerprint, list_images
from app.core.jobs import Job, Progress, clock
from app.core.scan_results import (
    EMPTY,
    ScanResult,
    layer_dirname,
    load_scan,
    load_scan_folder,
    merge_results,
    save_scan_result,
    scan_dir,
)
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess, prepare_batch
from app.engine.runtime.receptive_field import ReceptiveField, receptive_field
from app.engine.runtime.recorder import ActivationRecorder, discover_layers

__all__ = [
    "ScanError", "ScanProgress", "ScanReport", "ScanResult", "TopKTracker",
    "default_layers", "list_images", "load_scan", "merge_scans", "scan",
]

_NO_ID = 1 << 62  # id of an empty slot: after every real file in path order


@dataclass(frozen=True, kw_only=True)
class ScanProgress(Progress):
    """Progress of a running scan, one per batch (`stage`: "scan", then "crops")."""

    stage: str  # "scan" (the pass over the dataset) or "crops" (cutting the winners)
    skipped: int
    images_per_s: float
    eta_s: float

    def line(self) -> str:
        """`scan  1234/5000  52.1 img/s  ETA 1:12  (3 skipped)` for a text progress bar."""
        eta = "--:--" if not math.isfinite(self.eta_s) else clock(self.eta_s)
        text = (f"{self.stage:5s} {self.done}/{self.total}  {self.images_per_s:.1f} img/s  "
                f"ETA {eta}")
        return text + (f"  ({self.skipped} skipped)" if self.skipped else "")


class ScanError(ValueError):
    """A scan that cannot start (no images, unknown layer); one line for the user."""


@dataclass(frozen=True)
class ScanReport:
    """What a finished scan did and where its results are."""

    folder: Path  # the scan folder: one sub-folder per layer
    layers: dict[str, Path]
    dataset: str
    files: int  # images found (in this shard)
    scanned: int  # decoded and run through the model
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of unreadable files
    seconds: float
    images_per_s: float
    resumed_from: int = 0  # files already done by an earlier, interrupted run
    cached: bool = False  # nothing to do: an identical scan was already stored
    rf: dict[str, ReceptiveField] = field(default_factory=dict, repr=False)


# -- the dataset ---------------------------------------------------------------------------------


def downscaled_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(h, w) after `app.capture.images.downscale_to(image, max_side)` (same arithmetic)."""
    longest = max(h, w)
    if max_side <= 0 or longest <= max_side:
        return h, w
    scale = max_side / longest
    return max(1, round(h * scale)), max(1, round(w * scale))


class _Frames(Dataset):
    """File i → (i, model input or uint8 frame, error): never raises on a bad file."""

    def __init__(self, paths: Sequence[str], ids: Sequence[int], max_pixels: int,
                 max_side: int, pre: Preprocess | None) -> None:
        self.paths, self.ids = list(paths), list(ids)
        self.max_pixels, self.max_side, self.pre = max_pixels, max_side, pre

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            image = read_image(self.paths[i], self.max_pixels)
        except ImageError as exc:
            return self.ids[i], None, str(exc)
        except Exception as exc:  # a decoder crash must not end the scan either
            return self.ids[i], None, f"{self.paths[i]}: {type(exc).__name__}: {exc}"
        h, w = downscaled_size(image.shape[0], image.shape[1], self.max_side)
        if (h, w) != image.shape[:2]:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        if self.pre is not None:
            t = prepare_batch([t], self.pre)[0]
        return self.ids[i], t, ""


def _collate(items: list[tuple[int, torch.Tensor | None, str]]) -> dict[str, Any]:
    ok = [(i, t) for i, t, _ in items if t is not None]
    return {
        "ids": torch.tensor([i for i, _ in ok], dtype=torch.int64),
        "images": [t for _, t in ok],
        "failed": [(i, err) for i, t, err in items if t is None],
    }


def _loader(ds: Dataset, batch_size: int | None, workers: int, collate: Callable,
            mp_context: str | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate, prefetch_factor=2 if workers else None,
                      persistent_workers=False,
                      multiprocessing_context=mp_context if workers else None)


# -- top-k on the device -----------------------------------------------------------------------


class TopKTracker:
    """Per-unit top-k of (value, image id, location), merged on the device batch by batch.

    Order: value descending, then image id ascending (ids follow path order), so ties are
    deterministic and batches may arrive in any grouping. State is (C, k) tensors.
    """

    def __init__(self, channels: int, k: int, device: torch.device) -> None:
        self.k = k
        self.values = torch.full((channels, k), -math.inf, device=device)
        self.ids = torch.full((channels, k), _NO_ID, dtype=torch.int64, device=device)
        self.locs = torch.zeros((channels, k), dtype=torch.int64, device=device)

    def merged(self, acts: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """New (values, ids, locs) after images `ids` (N,) with maps `acts` (N, C, H, W)."""
        flat = acts.detach().flatten(2)
        loc = flat.argmax(2)  # first maximum on ties, as numpy's argmax
        val = flat.gather(2, loc.unsqueeze(2)).squeeze(2).float().nan_to_num(nan=-math.inf)
        c = val.shape[1]
        cand_v = torch.cat([self.values, val.t()], 1)
        cand_i = torch.cat([self.ids, ids.to(self.ids.device).view(1, -1).expand(c, -1)], 1)
        cand_l = torch.cat([self.locs, loc.t()], 1)
        by_id = cand_i.argsort(stable=True, dim=1)
        by_value = cand_v.gather(1, by_id).argsort(stable=True, dim=1, descending=True)
        keep = by_id.gather(1, by_value)[:, : self.k]
        return cand_v.gather(1, keep), cand_i.gather(1, keep), cand_l.gather(1, keep)

    def commit(self, state: tuple[torch.Tensor, ...]) -> None:
        self.values, self.ids, self.locs = state

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.cpu().numpy(), "ids": self.ids.cpu().numpy(),
                "locs": self.locs.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        dev = self.values.device
        self.values = torch.from_numpy(state["values"]).to(dev)
        self.ids = torch.from_numpy(state["ids"]).to(dev)
        self.locs = torch.from_numpy(state["locs"]).to(dev)


class _StopForward(Exception):
    pass


def _truncated_forward(model: torch.nn.Module, rec: ActivationRecorder,
                       layers: Sequence[str]) -> tuple[Callable, Callable[[], None]]:
    """A forward that stops once every chosen layer is recorded, and its un-hook."""
    wanted = set(layers)
    names = {layer.partition(":")[0] for layer in layers}
    handles = []

    def stop_when_done(*_: Any) -> None:
        if wanted <= rec.activations.keys():
            raise _StopForward

    modules = dict(model.named_modules())
    for name in names:  # registered after the recorder's hooks, so they run after them
        handles.append(modules[name].register_forward_hook(stop_when_done))

    def forward(x: torch.Tensor) -> None:
        with contextlib.suppress(_StopForward):
            model(x)

    def remove() -> None:
        for h in handles:
            h.remove()

    return forward, remove


# -- checkpoints ---------------------------------------------------------------------------------


def _checkpoint_dir(folder: Path, key: str) -> Path:
    return folder / ".partial" / key


def _save_checkpoint(path: Path, done_batches: int, trackers: dict[str, TopKTracker],
                     skipped: list[tuple[str, str]], elapsed: float) -> None:
    arrays = {f"{i}.{name}": a for i, t in enumerate(trackers.values())
              for name, a in t.state().items()}
    token = os.urandom(8).hex()
    atomic_write_npz(path / "state.npz", {"token": np.array(token), **arrays})
    atomic_write_json(path / "state.json", {
        "done_batches": done_batches, "layers": list(trackers), "skipped": skipped,
        "elapsed": elapsed, "token": token})


def _load_checkpoint(path: Path, trackers: dict[str, TopKTracker]) -> tuple[int, list, float]:
    try:
        doc = json.loads((path / "state.json").read_text())
        with np.load(path / "state.npz") as z:
            if str(z["token"]) != doc["token"] or doc["layers"] != list(trackers):
                return 0, [], 0.0
            for i, t in enumerate(trackers.values()):
                t.load({n: z[f"{i}.{n}"] for n in ("values", "ids", "locs")})
    except (OSError, ValueError, KeyError):
        return 0, [], 0.0
    return int(doc["done_batches"]), [tuple(s) for s in doc["skipped"]], float(doc["elapsed"])


# -- crops ---------------------------------------------------------------------------------------


def image_box(model_box: Sequence[int], orig_hw: tuple[int, int], frame_hw: tuple[int, int],
              pre: Preprocess) -> tuple[int, int, int, int]:
    """A box in model-input pixels → (y0, x0, y1, x1) in the image file's own pixels.

    The model saw `pre.crop_box` of the frame (the file downscaled to `frame_hw`) resized
    to `pre.size`; the box is mapped back through both and rounded outwards.
    """
    crop = rescale_crop(pre.crop_box(*frame_hw), frame_hw, orig_hw)
    return to_frame_box(model_box, crop, pre.size, orig_hw)


def letterbox(region: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 → (size, size, 3): scaled to fit, centred, black bars."""
    out = np.zeros((size, size, 3), np.uint8)
    h, w = region.shape[:2]
    if h == 0 or w == 0:
        return out
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(np.ascontiguousarray(region), (nw, nh), interpolation=interp)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


class _CropJobs(Dataset):
    """File → the boxes and crops of every top-k slot that points at it."""

    def __init__(self, jobs: list[tuple[str, np.ndarray, np.ndarray]], pre: Preprocess,
                 size: int, max_pixels: int, max_side: int) -> None:
        self.jobs, self.pre, self.size = jobs, pre, size
        self.max_pixels, self.max_side = max_pixels, max_side

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        path, slots, model_boxes = self.jobs[i]
        boxes = np.full((len(slots), 4), -1, np.int32)
        crops = np.zeros((len(slots), self.size, self.size, 3), np.uint8)
        try:
            image = read_image(path, self.max_pixels)
        except Exception:  # gone or changed since the scan: empty crop, box -1
            return slots, boxes, crops
        hw = image.shape[:2]
        frame_hw = downscaled_size(hw[0], hw[1], self.max_side)
        for j, mb in enumerate(model_boxes):
            b = image_box(mb, hw, frame_hw, self.pre)
            boxes[j] = b
            crops[j] = letterbox(image[b[0]:b[2], b[1]:b[3]], self.size)
        return slots, boxes, crops


def _identity(item: Any) -> Any:
    return item


# -- the scan ------------------------------------------------------------------------------------


def scan(
    loaded: LoadedModel, dataset: str | Path, layers: Sequence[str], top_k: int = 9,
    batch_size: int = 32, workers: int = 2, cache_dir: str = "", *,
    out: str | Path | None = None, shard: tuple[int, int] = (0, 1), crop_size: int = 96,
    checkpoint_every: int = 20, max_pixels: int = 80_000_000, max_side: int = 1280,
    resume: bool = True, mp_context: str | None = None,
) -> Job[ScanProgress, ScanReport]:
    """Scan `dataset` for the top-k images of every unit of `layers`; see the module doc."""
    started = time.perf_counter()
    if top_k <= 0 or batch_size <= 0 or workers < 0 or checkpoint_every <= 0:
        raise ScanError("top_k, batch_size and checkpoint_every must be positive, workers ≥ 0")
    index, count = shard
    if not 0 <= index < count:
        raise ScanError(f"bad shard {index}/{count}: need 0 ≤ I < N")
    root = Path(dataset).expanduser()
    if not root.exists():
        raise ScanError(f"dataset not found: {root}")
    files = list_images(root)[index::count]
    if not files:
        raise ScanError(f"no images under {root} (looked for "
                        "jpg, jpeg, png, webp, bmp, tif, tiff)")
    layers = list(dict.fromkeys(layers))
    shapes, clone = _layer_shapes(loaded, layers)
    pre = loaded.preprocess
    folder = Path(out) if out is not None else scan_dir(cache_root(cache_dir), model_key(loaded))
    rfs = {layer: receptive_field(loaded.module, layer, pre.size) for layer in layers}
    digest = files_fingerprint(files)
    root_name = Path(os.path.abspath(root)).as_posix()
    dataset_doc = {"root": root_name, "digest": digest, "files": len(files),
                   "shard": f"{index}/{count}"}

    cached = _cached_report(folder, layers, dataset_doc, top_k, crop_size, loaded)
    if resume and cached is not None:
        return ScanReport(folder, cached[0], root_name, len(files), cached[1],
                          tuple(cached[2]), time.perf_counter() - started, 0.0, 0, True, rfs)

    device = loaded.device
    trackers = {layer: TopKTracker(shapes[layer][0], top_k, device) for layer in layers}
    run_key = hashlib.sha256(json.dumps(
        [digest, layers, top_k, batch_size, index, count, model_key(loaded), max_side]
    ).encode()).hexdigest()[:16]
    ckpt = _checkpoint_dir(folder, run_key)
    done_batches, skipped, elapsed_before = (
        _load_checkpoint(ckpt, trackers) if resume else (0, [], 0.0))
    skipped = [(str(p), str(r)) for p, r in skipped]
    start = done_batches * batch_size
    resumed_from = min(start, len(files))

    in_workers = device.type == "cpu"  # on a GPU, resizing belongs on the GPU, as live
    ds = _Frames(files[start:], range(start, len(files)), max_pixels, max_side,
                 pre if in_workers else None)
    meter = _Meter(len(files), resumed_from)
    model = loaded.module
    last_saved = done_batches
    scanned_now = 0
    with torch.no_grad(), ActivationRecorder(model, layers) as rec:
        rec.clone_layers |= clone & set(layers)
        forward, unhook = _truncated_forward(model, rec, layers)
        it = iter(_loader(ds, batch_size, workers, _collate, mp_context))
        try:
            for batch in it:
                if batch["images"]:
                    if in_workers:
                        x = torch.stack(batch["images"])
                    else:
                        x = prepare_batch([t.to(device) for t in batch["images"]], pre)
                    rec.run(x, forward)
                    # all layers merged first, then committed: a failure mid-way leaves
                    # the state of the previous batch, never half a batch
                    new = {n: trackers[n].merged(rec.activations[n], batch["ids"])
                           for n in layers}
                    for n, state in new.items():
                        trackers[n].commit(state)
                    scanned_now += len(batch["images"])
                skipped += [(files[i], err) for i, err in batch["failed"]]
                done_batches += 1
                if done_batches - last_saved >= checkpoint_every:
                    _save_checkpoint(ckpt, done_batches, trackers, skipped,
                                     elapsed_before + time.perf_counter() - started)
                    last_saved = done_batches
                # a cancel closes the generator here: the except below checkpoints
                yield meter.update("scan", len(batch["images"]) + len(batch["failed"]),
                                   len(skipped))
        except BaseException:
            if done_batches > last_saved:
                _save_checkpoint(ckpt, done_batches, trackers, skipped,
                                 elapsed_before + time.perf_counter() - started)
            raise
        finally:
            del it  # shuts the worker processes down
            unhook()

    states = {n: t.state() for n, t in trackers.items()}
    scanned = len(files) - len(skipped)
    layer_dirs = yield from _finish(folder, states, files, pre, rfs, shapes, crop_size,
                                    workers, max_pixels, max_side, mp_context, meta={
                             "model": loaded.name, "model_key": model_key(loaded),
                             "cache_format": CACHE_FORMAT, "top_k": top_k,
                             "input_size": pre.size, "crop_size": crop_size,
                             "datasets": [dataset_doc], "files_scanned": scanned,
                             "skipped": sorted(skipped)})
    _remove_tree(ckpt)
    seconds = time.perf_counter() - started
    return ScanReport(folder, layer_dirs, root_name, len(files), scanned,
                      tuple(sorted(skipped)), seconds, scanned_now / max(seconds, 1e-9),
                      resumed_from, False, rfs)


def _layer_shapes(loaded: LoadedModel, layers: Sequence[str]
                  ) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """(C, H, W) of each layer, and the layers whose outputs are overwritten in place later
    in the pass (ResNet's `+=`), which the recorder must copy."""
    infos, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    by_name = {i.name: i.shape for i in infos}
    missing = [layer for layer in layers if layer not in by_name]
    if missing:
        sample = ", ".join(list(by_name)[:6])
        raise ScanError(f"no layer named {missing[0]!r} with a (C, H, W) output in "
                        f"{loaded.name} (e.g. {sample}; see `deepvis layers`)")
    if not layers:
        raise ScanError("no layers to scan")
    return {layer: by_name[layer] for layer in layers}, clone


def _cached_report(folder: Path, layers: Sequence[str], dataset_doc: dict, top_k: int,
                   crop_size: int, loaded: LoadedModel) -> tuple[dict, int, list] | None:
    dirs, scanned, skipped = {}, 0, []
    for layer in layers:
        r = load_scan_folder(folder / layer_dirname(layer))
        if (r is None or r.meta.get("datasets") != [dataset_doc] or r.meta.get("top_k") != top_k
                or r.meta.get("crop_size") != crop_size
                or r.meta.get("cache_format") != CACHE_FORMAT
                or r.meta.get("model_key") != model_key(loaded)):
            return None
        dirs[layer] = r.folder
        scanned, skipped = r.meta["files_scanned"], [tuple(s) for s in r.meta["skipped"]]
    return dirs, scanned, skipped


class _Meter:
    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.t0 = time.perf_counter()

    def update(self, stage: str, n: int, skipped: int) -> ScanProgress:
        self.done += n
        dt = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / dt if dt > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        return ScanProgress(done=self.done, total=self.total, stage=stage, skipped=skipped,
                            images_per_s=rate, eta_s=eta)


def _finish(folder: Path, states: dict[str, dict[str, np.ndarray]], files: Sequence[str],
            pre: Preprocess, rfs: dict[str, ReceptiveField], shapes: dict[str, tuple[int, ...]],
            crop_size: int, workers: int, max_pixels: int, max_side: int,
            mp_context: str | None, meta: dict[str, Any]
            ) -> Generator[ScanProgress, None, dict[str, Path]]:
    """Cut the crops of every top-k slot (one decode per file) and write each layer."""
    layers = list(states)
    per_layer: dict[str, dict[str, np.ndarray]] = {}
    slot_file, slot_id, slot_box = [], [], []
    offset = 0
    for layer in layers:
        st = states[layer]
        w = shapes[layer][2]
        ids, locs = st["ids"], st["locs"]
        filled = ids != _NO_ID
        y, x = (locs // w).astype(np.int32), (locs % w).astype(np.int32)
        model_box = rfs[layer].boxes(y, x).astype(np.int32)
        per_layer[layer] = {"values": st["values"].astype(np.float32), "ids": ids, "y": y,
                            "x": x, "model_box": model_box, "filled": filled}
        flat = np.flatnonzero(filled)
        slot_file.append(ids.reshape(-1)[flat])
        slot_id.append(offset + flat)
        slot_box.append(model_box.reshape(-1, 4)[flat])
        offset += ids.size
    all_file = np.concatenate(slot_file)
    all_slot = np.concatenate(slot_id)
    all_box = np.concatenate(slot_box)
    order = np.argsort(all_file, kind="stable")
    uniq, starts = np.unique(all_file[order], return_index=True)
    bounds = [*list(starts[1:]), len(order)]
    jobs = [(files[int(f)], all_slot[order[s:e]], all_box[order[s:e]])
            for f, s, e in zip(uniq, starts, bounds, strict=True)]

    boxes = np.full((offset, 4), -1, np.int32)
    tmp_crops: dict[str, np.ndarray] = {}
    staging = folder / f".staging-{os.getpid()}-{os.urandom(4).hex()}"  # one per running scan
    staging.mkdir(parents=True, exist_ok=True)
    bases, offset = {}, 0
    for layer in layers:
        bases[layer] = offset
        offset += per_layer[layer]["ids"].size
    try:
        for layer in layers:
            c, k = per_layer[layer]["ids"].shape
            tmp_crops[layer] = np.lib.format.open_memmap(
                staging / f"{layer_dirname(layer)}.npy", mode="w+", dtype=np.uint8,
                shape=(c, k, crop_size, crop_size, 3))
        meter = _Meter(len(jobs), 0)
        # a few files decode faster here than worker processes start
        loader = _loader(_CropJobs(jobs, pre, crop_size, max_pixels, max_side), None,
                         workers if len(jobs) > 16 * max(workers, 1) else 0, _identity,
                         mp_context)
        for slots, got_boxes, crops in loader:
            boxes[slots] = got_boxes
            for layer in layers:
                base = bases[layer]
                mm = tmp_crops[layer]
                inside = (slots >= base) & (slots < base + mm.shape[0] * mm.shape[1])
                if inside.any():
                    local = slots[inside] - base
                    mm.reshape(-1, crop_size, crop_size, 3)[local] = crops[inside]
            yield meter.update("crops", 1, 0)
        out_dirs = {}
        for layer in layers:
            pl = per_layer[layer]
            c, k = pl["ids"].shape
            base = bases[layer]
            used = np.unique(pl["ids"][pl["filled"]])
            file_idx = np.full((c, k), EMPTY, np.int32)
            file_idx[pl["filled"]] = np.searchsorted(used, pl["ids"][pl["filled"]])
            arrays = {
                "values": np.where(pl["filled"], pl["values"], -np.inf).astype(np.float32),
                "file_index": file_idx, "y": np.where(pl["filled"], pl["y"], 0).astype(np.int32),
                "x": np.where(pl["filled"], pl["x"], 0).astype(np.int32),
                "box": boxes[base:base + c * k].reshape(c, k, 4),
                "model_box": np.where(pl["filled"][..., None], pl["model_box"], 0)
                .astype(np.int32),
            }
            rf = rfs[layer]
            layer_meta = dict(meta, layer=layer, units=c, map_shape=list(shapes[layer][1:]),
                              rf={"size": list(rf.size), "stride": list(rf.stride)})
            staged = staging / f"{layer_dirname(layer)}.npy"
            mapped = tmp_crops.pop(layer)
            assert isinstance(mapped, np.memmap)
            mapped.flush()  # the last reference: the map closes
            del mapped

            def write_crops(path: Path, staged: Path = staged) -> None:
                with open(staged, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(staged, path)  # same file system: atomic, no second copy

            out_dirs[layer] = save_scan_result(folder / layer_dirname(layer), layer_meta,
                                               [files[int(f)] for f in used], arrays,
                                               write_crops)
        return out_dirs
    finally:
        tmp_crops.clear()
        _remove_tree(staging)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for p in sorted(path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
    path.rmdir()


def merge_scans(inputs: Iterable[str | Path], out: str | Path) -> list[Path]:
    """Merge scan folders (layer sub-folders in each) into `out`; the layers all share."""
    roots = [Path(p) for p in inputs]
    if len(roots) < 2:
        raise ScanError("--merge needs at least two scan folders")
    per_root = []
    for r in roots:
        found = {}
        if r.is_dir():
            for sub in sorted(r.iterdir()):
                res = load_scan_folder(sub)
                if res is not None:
                    found[res.layer] = res
        if not found:
            raise ScanError(f"no finished scan in {r}")
        per_root.append(found)
    common = [layer for layer in per_root[0] if all(layer in f for f in per_root[1:])]
    if not common:
        raise ScanError("the scans to merge share no layer")
    written = []
    for layer in common:
        try:
            written.append(merge_results([f[layer] for f in per_root],
                                         Path(out) / layer_dirname(layer)))
        except ValueError as exc:
            raise ScanError(str(exc)) from None
    return written


def default_layers(loaded: LoadedModel, preferred: Sequence[str]) -> list[str]:
    """`preferred` names that exist in the model, else the model's default layer."""
    from app.engine.runtime.recorder import default_layer

    infos, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    names = {i.name for i in infos}
    chosen = [p for p in preferred if p in names]
    return chosen or [default_layer(infos)]

