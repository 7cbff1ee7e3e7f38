"""What feeds a scan: the files decoded (in the pass's worker processes) and batched.

The loader, the progress and the checkpoints are the dataset-pass kit of
`app.engine.runtime.dataset_pass`, shared with dissection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from app.capture.images import ImageError, read_image
from app.engine.runtime.preprocess import Preprocess, prepare_batch

NO_ID = 1 << 62  # id of an empty slot: after every real file in path order


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
