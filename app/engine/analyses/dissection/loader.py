"""What feeds dissection: decoding workers that return the network's input and the labels.

The network sees the whole image, squashed to size × size (no centre crop), so that unit
maps and masks cover the same pixels. Workers decode, resize (cv2 INTER_AREA) and read or
compute the label planes; what crosses to the main process per image is the uint8 input,
the labels as small indices into the image's own label list, and (only for images that
some unit shows among its top images) a thumbnail to draw the mask on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from app.capture.images import ImageError, read_image
from app.engine.analyses.dissection.concepts import Concepts, DissectionError, label_planes
from app.engine.runtime.preprocess import Preprocess


@dataclass
class Labelled:
    """One image's labels: `inverse` (D, P) index into `ids`, len(ids) meaning none."""

    index: int
    shape: tuple[int, int]  # (sh, sw)
    ids: np.ndarray  # (L_i,) int64 label numbers present
    counts: np.ndarray  # (L_i,) int64 label pixels (planes counted separately, as NetDissect)
    inverse: np.ndarray  # (D, sh·sw) int16/int32
    annotated: np.ndarray  # (K,) bool
    thumb: np.ndarray | None  # (sh, sw, 3) uint8 RGB when asked for


def encode_planes(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D, sh, sw) labels → (ids, counts, inverse): label 0 maps to len(ids)."""
    flat = planes.reshape(planes.shape[0], -1)
    ids, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.reshape(flat.shape)
    if ids.size and ids[0] == 0:
        ids, inverse = ids[1:], np.where(inverse == 0, len(ids) - 1, inverse - 1)
    counts = np.bincount(inverse.ravel(), minlength=len(ids) + 1)[: len(ids)]
    dtype = np.int16 if len(ids) < 32_000 else np.int32
    return ids.astype(np.int64), counts.astype(np.int64), inverse.astype(dtype)


class ConceptImages(Dataset):
    """Item i → (i, input (3, S, S) uint8 or None, Labelled or None, error). Never raises."""

    def __init__(self, concepts: Concepts, indices: Sequence[int], pre: Preprocess,
                 max_pixels: int, labels: bool, thumbs: frozenset[int] = frozenset()) -> None:
        self.concepts, self.indices, self.size = concepts, list(indices), pre.size
        self.max_pixels, self.labels, self.thumbs = max_pixels, labels, thumbs

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor | None, Labelled | None, str]:
        i = self.indices[k]
        item = self.concepts.items[i]
        try:
            rgb = read_image(item.image, self.max_pixels)
            s = self.size
            x = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA)
            t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)
            if not self.labels:
                return i, t, None, ""
            thumbs: dict[tuple[int, int], np.ndarray] = {}

            def thumb(sh: int, sw: int) -> np.ndarray:
                if (sh, sw) not in thumbs:
                    thumbs[(sh, sw)] = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
                return thumbs[(sh, sw)]

            planes, annotated, shape = label_planes(item, self.concepts, thumb)
            ids, counts, inverse = encode_planes(planes)
            small = thumb(*shape) if i in self.thumbs else None
            return i, t, Labelled(i, shape, ids, counts, inverse, annotated, small), ""
        except (ImageError, DissectionError) as exc:
            return i, None, None, str(exc)
        except Exception as exc:  # a decoder crash must not end the dissection either
            return i, None, None, f"{item.image}: {type(exc).__name__}: {exc}"


def collate(items: list[tuple[int, torch.Tensor | None, Labelled | None, str]]
            ) -> dict[str, Any]:
    ok = [(i, t, lab) for i, t, lab, _ in items if t is not None]
    return {"ids": [i for i, _, _ in ok], "images": [t for _, t, _ in ok],
            "labels": [lab for _, _, lab in ok],
            "failed": [(i, err) for i, t, _, err in items if t is None]}


def normalize(images: list[torch.Tensor], pre: Preprocess, device: torch.device
              ) -> torch.Tensor:
    """(3, S, S) uint8 tensors → (N, 3, S, S) float32 normalized batch on `device`."""
    x = torch.stack(images).to(device).float().div_(255.0)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
