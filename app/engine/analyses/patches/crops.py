"""Receptive-field crops of the winners: one decode per file that made some top-k, in
the scan's worker processes, written next to the top-k arrays atomically."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from app.capture.images import read_image
from app.core.boxes import rescale_crop, to_frame_box
from app.core.scan_results import (
    EMPTY,
    layer_dirname,
    save_scan_result,
)
from app.engine.analyses.patches.pipeline import NO_ID, downscaled_size
from app.engine.runtime.dataset_pass import Meter, PassProgress, batches, make_loader
from app.engine.runtime.preprocess import Preprocess
from app.engine.runtime.receptive_field import ReceptiveField


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


class CropJobs(Dataset):
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


def identity(item: Any) -> Any:
    return item


def cut_crops(folder: Path, states: dict[str, dict[str, np.ndarray]], files: Sequence[str],
            pre: Preprocess, rfs: dict[str, ReceptiveField], shapes: dict[str, tuple[int, ...]],
            crop_size: int, workers: int, max_pixels: int, max_side: int,
            mp_context: str | None, meta: dict[str, Any]
            ) -> Generator[PassProgress, None, dict[str, Path]]:
    """Cut the crops of every top-k slot (one decode per file) and write each layer."""
    layers = list(states)
    per_layer: dict[str, dict[str, np.ndarray]] = {}
    slot_file, slot_id, slot_box = [], [], []
    offset = 0
    for layer in layers:
        st = states[layer]
        w = shapes[layer][2]
        ids, locs = st["ids"], st["locs"]
        filled = ids != NO_ID
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
    bounds = [*list(starts[1:]), len(order)][: len(starts)]  # none when no slot is filled
    jobs = [(files[int(f)], all_slot[order[s:e]], all_box[order[s:e]])
            for f, s, e in zip(uniq, starts, bounds, strict=True)]

    boxes = np.full((offset, 4), -1, np.int32)
    tmp_crops: dict[str, np.ndarray] = {}
    remove_abandoned_staging(folder)
    staging = folder / f"{STAGING}{os.getpid()}-{os.urandom(4).hex()}"  # one per running scan
    staging.mkdir(parents=True, exist_ok=True)
    loader: Generator[Any, None, None] | None = None
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
        meter = Meter(len(jobs), 0)
        # a few files decode faster here than worker processes start
        loader = cut = batches(make_loader(
            CropJobs(jobs, pre, crop_size, max_pixels, max_side), None,
            workers if len(jobs) > 16 * max(workers, 1) else 0, identity, mp_context))
        for slots, got_boxes, crops in cut:
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
                              rf={"size": list(rf.size), "stride": list(rf.stride),
                                  # tokens: their own patch, or the whole image (after mixing)
                                  **({"note": rf.note} if rf.note else {})})
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
        if loader is not None:
            loader.close()  # shuts the worker processes down, also when closed by a cancel
        tmp_crops.clear()
        remove_tree(staging)


STAGING = ".staging-"  # + PID-random: crops being cut by one running scan


def remove_abandoned_staging(folder: Path) -> list[Path]:
    """Remove the staging folders of scans that were killed (their process is gone).

    A scan that is still running elsewhere keeps its own; returns what was removed.
    """
    removed = []
    for path in folder.glob(f"{STAGING}*"):
        pid = path.name[len(STAGING):].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            remove_tree(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would send Ctrl+C
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: leave it alone
    return True


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for p in sorted(path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
    path.rmdir()


