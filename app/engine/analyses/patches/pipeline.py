"""What feeds a scan: decoding worker processes, their batches, and the progress meter."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from app.capture.images import ImageError, read_image
from app.core.jobs import Progress, clock
from app.engine.runtime.preprocess import Preprocess, prepare_batch

NO_ID = 1 << 62  # id of an empty slot: after every real file in path order


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


class Meter:
    """Counts a stage's items and turns them into `ScanProgress` with a rate and an ETA."""

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


# -- the dataset ---------------------------------------------------------------------------------


def downscaled_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(h, w) after `app.capture.images.downscale_to(image, max_side)` (same arithmetic)."""
    longest = max(h, w)
    if max_side <= 0 or longest <= max_side:
        return h, w
    scale = max_side / longest
    return max(1, round(h * scale)), max(1, round(w * scale))


class Frames(Dataset):
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


def collate(items: list[tuple[int, torch.Tensor | None, str]]) -> dict[str, Any]:
    ok = [(i, t) for i, t, _ in items if t is not None]
    return {
        "ids": torch.tensor([i for i, _ in ok], dtype=torch.int64),
        "images": [t for _, t in ok],
        "failed": [(i, err) for i, t, err in items if t is None],
    }


def make_loader(ds: Dataset, batch_size: int | None, workers: int, collate: Callable,
            mp_context: str | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate, prefetch_factor=2 if workers else None,
                      persistent_workers=False,
                      multiprocessing_context=mp_context if workers else None)


