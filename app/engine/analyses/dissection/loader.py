"""What feeds dissection: decoding workers that return the network's input and the labels.

The network sees the whole image, squashed to size × size (no centre crop), so that unit
maps and masks cover the same pixels. Workers decode, resize (cv2 INTER_AREA) and read or
compute the label planes; what crosses to the main process per image is the uint8 input,
the labels as small indices into the image's own label list, and (only for images that
some unit shows among its top images) a thumbnail to draw the mask on.

A pass that spools (the first of a one-pass dissection) asks for the labels and every
image's thumbnail at once (`SPOOL`), so that the second pass decodes nothing: there, an
image whose labels cannot be read still gives its input (its activations count towards the
thresholds, as in the two-pass run, whose second pass is where such a file fails) and the
label error travels with it, to be reported as skipped by the tally.
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


SPOOL = "spool"  # `labels`: labels and thumbnails of every image, label errors kept apart


class ConceptImages(Dataset):
    """Item i → (i, input (3, S, S) uint8 or None, Labelled or None, error). Never raises.

    `labels`: False (inputs only), True (labels too; a label error fails the item) or
    `SPOOL` (labels and a thumbnail of every image; a label error leaves the input, with
    the error beside it)."""

    def __init__(self, concepts: Concepts, indices: Sequence[int], pre: Preprocess,
                 max_pixels: int, labels: bool | str,
                 thumbs: frozenset[int] = frozenset()) -> None:
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
        except Exception as exc:
            return i, None, None, _reason(item.image, exc)
        if not self.labels:
            return i, t, None, ""
        try:
            return i, t, self._labelled(i, rgb), ""
        except Exception as exc:
            # the same words as a failed read: a one-pass run reports what two passes would
            return i, (t if self.labels == SPOOL else None), None, _reason(item.image, exc)

    def _labelled(self, i: int, rgb: np.ndarray) -> Labelled:
        thumbs: dict[tuple[int, int], np.ndarray] = {}

        def thumb(sh: int, sw: int) -> np.ndarray:
            if (sh, sw) not in thumbs:
                thumbs[(sh, sw)] = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
            return thumbs[(sh, sw)]

        planes, annotated, shape = label_planes(self.concepts.items[i], self.concepts, thumb)
        ids, counts, inverse = encode_planes(planes)
        small = thumb(*shape) if self.labels == SPOOL or i in self.thumbs else None
        return Labelled(i, shape, ids, counts, inverse, annotated, small)


def _reason(image: str, exc: Exception) -> str:
    if isinstance(exc, (ImageError, DissectionError)):
        return str(exc)
    return f"{image}: {type(exc).__name__}: {exc}"  # a decoder crash ends nothing either


def collate(items: list[tuple[int, torch.Tensor | None, Labelled | None, str]]
            ) -> dict[str, Any]:
    """A batch: the decoded images (`ids`, `images`, `labels`: None where they could not
    be read, with the reason in `label_errors`) and the `failed` (id, reason) pairs."""
    ok = [(i, t, lab, err) for i, t, lab, err in items if t is not None]
    return {"ids": [i for i, _, _, _ in ok], "images": [t for _, t, _, _ in ok],
            "labels": [lab for _, _, lab, _ in ok],
            "label_errors": [err for _, _, _, err in ok],
            "failed": [(i, err) for i, t, _, err in items if t is None]}


def normalize(images: list[torch.Tensor], pre: Preprocess, device: torch.device
              ) -> torch.Tensor:
    """(3, S, S) uint8 tensors → (N, 3, S, S) float32 normalized batch on `device`."""
    x = torch.stack(images).to(device).float().div_(255.0)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
