"""The second pass: each unit's mask against each image's labels, as integer tallies.

Per image: the unit maps are upsampled bilinearly to the mask resolution (sh, sw); a unit's
mask is where the upsampled map exceeds its threshold. With the image's labels as a
(pixels, labels present) count matrix A (a pixel counts once per plane holding the label,
as NetDissect's bincount over stacked planes; built once per image for all its layers, with
a last column of ones), the intersections of every unit with every label, and its |mask|,
are one product masks @ A. Products of 0/1 masks and small counts are exact in float32 up
to 2^24 per entry, far above one image's pixels; the sums go into int64 (under a lock: a
batch's images tally on several threads), so tallies are exact, the same in any order, and
mergeable by addition.

Also here: the per-unit top-k images by maximum activation (from the first pass).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.analyses.dissection.loader import Labelled

NO_IMAGE = 1 << 62  # id of an empty top-k slot: after every real image


class TopImages:
    """Per unit, the k images with the highest maximum activation (ties: lower id first)."""

    def __init__(self, units: int, k: int, device: torch.device) -> None:
        self.values = torch.full((units, k), -math.inf, device=device)
        self.ids = torch.full((units, k), NO_IMAGE, dtype=torch.int64, device=device)

    def add(self, acts: torch.Tensor, ids: torch.Tensor) -> None:
        """Images `ids` (N,) with maps (N, units, h, w)."""
        peak = acts.detach().float().flatten(2).amax(2).t()  # (units, N)
        ids = ids.to(self.ids.device).view(1, -1).expand(peak.shape[0], -1)
        self._keep(torch.cat([self.values, peak], 1), torch.cat([self.ids, ids], 1))

    def absorb(self, state: dict[str, np.ndarray]) -> None:
        """Fold in another `state()` over other images: exactly the top-k of both (the order
        is total, so the top-k of a union is the top-k of the parts' top-k)."""
        dev = self.values.device
        self._keep(torch.cat([self.values, torch.from_numpy(state["values"]).to(dev)], 1),
                   torch.cat([self.ids, torch.from_numpy(state["ids"]).to(dev)], 1))

    def _keep(self, v: torch.Tensor, i: torch.Tensor) -> None:
        by_id = i.argsort(dim=1, stable=True)
        order = by_id.gather(1, v.gather(1, by_id).argsort(dim=1, stable=True, descending=True))
        keep = order[:, : self.values.shape[1]]
        self.values, self.ids = v.gather(1, keep), i.gather(1, keep)

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.cpu().numpy(), "ids": self.ids.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        dev = self.values.device
        self.values = torch.from_numpy(state["values"]).to(dev)
        self.ids = torch.from_numpy(state["ids"]).to(dev)


@dataclass(frozen=True)
class ImageLabels:
    """One image's labels as the tally multiplies them, made once for all its layers:
    `matrix` (pixels, L_i + 1) float32, column l the count of label ids[l] at each pixel
    (once per plane holding it), the last column all ones (so the same product gives |mask|);
    `ids` the label numbers, `cats` the categories the image annotates."""

    matrix: torch.Tensor
    ids: torch.Tensor
    cats: torch.Tensor


def image_labels(lab: Labelled, device: torch.device) -> ImageLabels:
    inv = torch.from_numpy(lab.inverse.astype(np.int64)).to(device)
    n_ids = len(lab.ids)
    a = torch.zeros(inv.shape[1], n_ids + 1, device=device)
    ones = torch.ones(inv.shape[1], 1, device=device)
    for plane in inv:  # label 0 (none) lands in the last column, which is then overwritten
        a.scatter_add_(1, plane[:, None], ones)
    a[:, n_ids] = 1.0
    return ImageLabels(a, torch.from_numpy(lab.ids).to(device),
                       torch.from_numpy(np.flatnonzero(lab.annotated)).to(device))


@dataclass(frozen=True)
class FiredMasks:
    """The masks of one image's units that fired: `units` (n,) and `masks` (n, sh, sw),
    1.0 inside, 0.0 outside."""

    units: torch.Tensor
    masks: torch.Tensor

    def of(self, units: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(len(units), sh, sw) bool: each asked unit's mask, empty where it did not fire."""
        out = np.zeros((len(units), *shape), bool)
        fired = self.units.cpu().numpy()  # ascending: torch.nonzero's order
        row = np.minimum(np.searchsorted(fired, units), max(len(fired) - 1, 0))
        hit = fired[row] == units if len(fired) else np.zeros(len(units), bool)
        if hit.any():
            out[hit] = (self.masks[torch.from_numpy(row[hit])] > 0).cpu().numpy()
        return out


NOTHING_FIRED = FiredMasks(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 1, 1))


class Tally:
    """Integer tallies of one layer: `both` (units, labels), `unit_cat` (units, categories)."""

    def __init__(self, units: int, labels: int, categories: int, thresholds: np.ndarray,
                 device: torch.device) -> None:
        self.device = device
        self.both = torch.zeros(units, labels, dtype=torch.int64, device=device)
        self.unit_cat = torch.zeros(units, categories, dtype=torch.int64, device=device)
        self.threshold = torch.from_numpy(thresholds).to(device, torch.float32)
        self._adding = threading.Lock()  # images tally on several threads; sums are exact

    def add(self, acts: torch.Tensor, labels: ImageLabels, shape: tuple[int, int]
            ) -> FiredMasks:
        """Tally one image (maps (units, h, w), its labels at mask size `shape`); returns
        the masks of the units that fired."""
        # bilinear values are convex combinations of the map's: a unit whose maximum is not
        # above its threshold has an empty mask, and costs nothing (as in NetDissect)
        active = torch.nonzero(acts.flatten(1).amax(1) > self.threshold).flatten()
        if active.numel() == 0:
            return NOTHING_FIRED
        up = F.interpolate(acts[active][None].float(), size=shape, mode="bilinear",
                           align_corners=False)[0]
        # the masks as 1.0 / 0.0 in place of the values: the comparison writes floats at once
        # (a bool mask converted after cost 4x the comparison)
        masks = torch.gt(up, self.threshold[active][:, None, None], out=up)
        # one product gives every intersection and, in the last column, |mask|: products of
        # 0/1 rows and small counts stay integers below 2^24, exact in float32
        counts = (masks.flatten(1) @ labels.matrix).round_().long()
        n_ids = len(labels.ids)
        rows = active[:, None]
        with self._adding:
            self.both.index_put_((rows, labels.ids[None, :]), counts[:, :n_ids],
                                 accumulate=True)
            self.unit_cat.index_put_((rows, labels.cats[None, :]),
                                     counts[:, n_ids:].expand(-1, len(labels.cats)),
                                     accumulate=True)
        return FiredMasks(active, masks)

    def state(self) -> dict[str, np.ndarray]:
        return {"both": self.both.cpu().numpy(), "unit_cat": self.unit_cat.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.both = torch.from_numpy(state["both"]).to(self.device)
        self.unit_cat = torch.from_numpy(state["unit_cat"]).to(self.device)
