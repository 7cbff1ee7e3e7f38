"""Where this frame falls on an activation atlas, live: each position of the atlas's layer
placed in its nearest cell, the cells lit by how much lands in them.

On while the view carries an `AtlasView` (the Atlas tab shows an atlas). The atlas's cells
are a direction set (`LAYER@atlasN`, the cells' mean activations, written by the atlas
job); the stage loads it once per folder and keeps the unit directions on the device. Per
frame it reads the layer's recorded activation (the pass records every layer: no second
pass), and for the H·W positions takes the cell of largest cosine, which is the argmax of
one (H·W × C) · (C × M) product with the unit directions (a position's own norm does not
change its argmax), and sums each position's norm into its cell. A position whose
activation is zero goes nowhere.

Why the cells' means and not the nearest collected sample, as `deepvis atlas --locate`
does: the samples are thousands of rows, the cells a few hundred, and the map is what the
user sees: a position lands in the cell whose average it is closest to. UMAP's `transform`
would re-run an optimization per frame. Cost: one small matmul, an argmax and a scatter; the
record carries (cells,) weights and the (H, W) cell index per position.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from app.core.results import AtlasRecord
from app.core.view import AtlasView, ViewState
from app.engine.live.stages.base import BaseStage, FramePass, StageContext
from app.engine.runtime.directions import load_direction_set

log = logging.getLogger(__name__)


def unit_directions(directions: torch.Tensor) -> torch.Tensor:
    norms = directions.norm(dim=1, keepdim=True)
    return directions / norms.clamp_min(torch.finfo(directions.dtype).tiny)


def place(acts: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (M,), cell of each position (H, W), -1 where the activation is 0) of a
    (C, H, W) map on M unit directions (M, C): nearest by cosine, weighted by norm."""
    c, h, w = acts.shape
    flat = acts.reshape(c, h * w).T.float()  # (P, C)
    norms = flat.norm(dim=1)
    best = (flat @ units.T).argmax(dim=1)
    live = norms > 0
    weights = torch.zeros(units.shape[0], device=acts.device, dtype=torch.float32)
    weights.index_add_(0, best[live], norms[live])
    cell_of = torch.where(live, best, torch.full_like(best, -1))
    return weights, cell_of.reshape(h, w)


class AtlasStage(BaseStage):
    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self._folder = ""
        self._units: torch.Tensor | None = None  # (M, C) on the device

    def _cells(self, folder: str) -> torch.Tensor | None:
        if folder != self._folder:
            self._folder = folder
            found = load_direction_set(folder)
            self._units = None
            if found is None:
                log.warning("no atlas cells in %s", folder)
            else:
                d = torch.from_numpy(np.asarray(found.directions, dtype=np.float32))
                self._units = unit_directions(d.to(self.ctx.loaded.device))
        return self._units

    def needs(self, view: ViewState) -> tuple[str, ...]:
        part = view.part(AtlasView)
        return (part.layer,) if part.folder else ()

    def record(self, frame: FramePass) -> AtlasRecord | None:
        part = frame.view.part(AtlasView)
        if not part.folder:
            return None
        began = time.perf_counter()
        units = self._cells(part.folder)
        acts = self.ctx.recorder.activations.get(part.layer)
        if units is None or acts is None or acts.dim() != 4 or acts.shape[1] != units.shape[1]:
            return None
        # a forked deletion records [intact; ablated]: place what the network receives
        weights, cell_of = place(acts[-1], units)
        return AtlasRecord(part.layer, part.folder, weights.cpu().numpy(),
                           cell_of.to(torch.int16).cpu().numpy(),
                           (time.perf_counter() - began) * 1000)
