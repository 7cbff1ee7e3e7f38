"""The second pass: each unit's mask against each image's labels, as integer tallies.

Per image: the unit maps are upsampled bilinearly to the mask resolution (sh, sw); a unit's
mask is where the upsampled map exceeds its threshold. With the image's labels as a
(pixels, labels present) count matrix A (a pixel counts once per plane holding the label,
as NetDissect's bincount over stacked planes), the intersections of every unit with every
label are one product masks @ A. Products of 0/1 masks and small counts are exact in
float32 up to 2^24 per entry, far above one image's pixels; the sums go into int64, so
tallies are exact and mergeable by addition.

Also here: the per-unit top-k images by maximum activation (from the first pass), and the
drawing of a unit's mask on an image for its top-image strip.
"""

from __future__ import annotations

import math

import cv2
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


class Tally:
    """Integer tallies of one layer: `both` (units, labels), `unit_cat` (units, categories)."""

    def __init__(self, units: int, labels: int, categories: int, thresholds: np.ndarray,
                 device: torch.device) -> None:
        self.device = device
        self.both = torch.zeros(units, labels, dtype=torch.int64, device=device)
        self.unit_cat = torch.zeros(units, categories, dtype=torch.int64, device=device)
        self.threshold = torch.from_numpy(thresholds).to(device, torch.float32)

    def masks(self, acts: torch.Tensor, shape: tuple[int, int],
              units: torch.Tensor | None = None) -> torch.Tensor:
        """(units, h, w) maps of one image → (units, sh, sw) bool masks (of `units` only)."""
        thr = self.threshold if units is None else self.threshold[units]
        up = F.interpolate(acts[None].float(), size=shape, mode="bilinear",
                           align_corners=False)[0]
        return up > thr[:, None, None]

    def add(self, acts: torch.Tensor, lab: Labelled) -> dict[int, torch.Tensor]:
        """Tally one image (maps (units, h, w), its labels); returns the non-empty masks."""
        # bilinear values are convex combinations of the map's: a unit whose maximum is not
        # above its threshold has an empty mask, and costs nothing (as in NetDissect)
        active = torch.nonzero(acts.flatten(1).amax(1) > self.threshold).flatten()
        if active.numel() == 0:
            return {}
        m = self.masks(acts[active], lab.shape, active)
        flat = m.flatten(1).float()
        inv = torch.from_numpy(lab.inverse.astype(np.int64)).to(self.device)
        n_ids = len(lab.ids)
        a = torch.zeros(flat.shape[1], n_ids + 1, device=self.device)
        ones = torch.ones(flat.shape[1], 1, device=self.device)
        for plane in inv:
            a.scatter_add_(1, plane[:, None], ones)
        both = (flat @ a[:, :n_ids]).round().long()
        ids = torch.from_numpy(lab.ids).to(self.device)
        rows = active[:, None]
        self.both[rows, ids[None, :]] += both  # (unit, label) pairs are distinct
        # |mask| from the float 0/1 rows: integer partial sums below 2^24 are exact in float32,
        # and summing a bool tensor to int64 was the slowest step of the tally
        count = flat.sum(1).round().long()
        cats = torch.from_numpy(np.flatnonzero(lab.annotated)).to(self.device)
        self.unit_cat[rows, cats[None, :]] += count[:, None]
        return {int(u): m[i] for i, u in enumerate(active.tolist())}

    def state(self) -> dict[str, np.ndarray]:
        return {"both": self.both.cpu().numpy(), "unit_cat": self.unit_cat.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.both = torch.from_numpy(state["both"]).to(self.device)
        self.unit_cat = torch.from_numpy(state["unit_cat"]).to(self.device)


# -- drawing -----------------------------------------------------------------------------------

TILE = 112  # px per side of one image in a unit's strip
EDGE_RGB = (255, 230, 0)


def draw_mask(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 image with the (h, w) bool mask drawn: outside dimmed, edge yellow."""
    out = (rgb.astype(np.float32) * np.where(mask, 1.0, 0.3)[..., None]).astype(np.uint8)
    p = np.pad(mask, 1, mode="edge")
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    out[mask & ~inner] = EDGE_RGB
    return out


def strip(tiles: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles side by side, each resized to TILE × TILE, on a dark background."""
    out = np.full((TILE, len(tiles) * (TILE + gap) - gap, 3), 24, np.uint8)
    for i, t in enumerate(tiles):
        interp = cv2.INTER_AREA if max(t.shape[:2]) > TILE else cv2.INTER_NEAREST
        out[:, i * (TILE + gap): i * (TILE + gap) + TILE] = cv2.resize(t, (TILE, TILE),
                                                                       interpolation=interp)
    return out
