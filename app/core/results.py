"""What the live worker sends the GUI per frame: the basics, and one sub-record per stage.

Every `Result` carries the frame, the grid of the shown layer, the selected unit's map and
the predictions. Each live stage that produced something this frame adds its own record,
read with `result.record(AttentionRecord)` (None: the stage was off or had nothing). A new
live feature adds a record class here, nothing in `Result`. Plain numpy and stdlib, so the
GUI never needs torch to read a result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from app.core.messages import AttributionMode, Frame, Patch, Prediction
from app.core.tiling import GridGeometry

R = TypeVar("R")


def find_record(records: tuple[Any, ...], kind: type[R]) -> R | None:
    """The record of `kind` among `records`, or None."""
    for r in records:
        if type(r) is kind:
            found: R = r
            return found
    return None


@dataclass(frozen=True, eq=False)
class Result:
    """Everything the GUI shows for one processed frame; small, already on the CPU."""

    seq: int
    frame: Frame
    crop: tuple[int, int, int, int]  # (x, y, w, h) of the frame region the model saw
    layer: str
    geometry: GridGeometry
    mosaic: np.ndarray  # (geometry.height, geometry.width) uint8
    unit: int
    unit_map: np.ndarray  # (tile_h, tile_w) float32, raw activations of the selected unit
    unit_max: np.ndarray  # (C,) float32, per-unit maximum over the map
    unit_mean: np.ndarray  # (C,) float32, per-unit mean over the map
    predictions: tuple[Prediction, ...]  # from the ablated net while units are deleted
    latency_ms: float  # capture timestamp → result ready
    compute_ms: float  # preprocessing + forward + tiling on the worker
    fps: float  # results per second over the last second or so
    dropped_frames: int  # frames the worker never saw (capture outran it)
    device: str
    model: str
    frozen: bool = False
    records: tuple[Any, ...] = ()  # the live stages' sub-records, one of each kind at most

    def record(self, kind: type[R]) -> R | None:
        """This frame's record of `kind`; None while its stage is off or had nothing."""
        return find_record(self.records, kind)

    def with_record(self, record: object) -> Result:
        """This result with `record` in place of its record of the same kind."""
        kept = (r for r in self.records if type(r) is not type(record))
        return replace(self, records=(*kept, record))


@dataclass(frozen=True, eq=False)
class AttributionRecord:
    """The selected unit's saliency over the region the model saw, by rule `mode`."""

    saliency: np.ndarray  # (crop h, crop w) uint8
    mode: AttributionMode
    ms: float  # its cost on the worker this frame


@dataclass(frozen=True, eq=False)
class DeletionRecord:
    """With units deleted: the intact network's predictions (`Result.predictions` are the
    ablated network's)."""

    intact: tuple[Prediction, ...]


@dataclass(frozen=True, eq=False)
class LiveTopRecord:
    """The frames seen this session that excite the selected unit most, best first; the
    same tuple while nothing changed, so the GUI can skip it."""

    patches: tuple[Patch, ...]


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """A transformer's head-averaged (or rolled out) attention over the input, and which
    block and query it is; no map, and why, when there is none."""

    weights: np.ndarray | None  # (h, w) float32
    text: str


@dataclass(frozen=True, eq=False)
class BuildingBlocks:
    """Why the network says `target` (rather than `versus`), at one layer, for one frame:
    the building blocks of Olah et al. 2018, attribution = activation × gradient."""

    layer: str
    target: int
    versus: int | None
    score: float  # logit[target] (− logit[versus])
    probability: float  # softmax probability of `target`
    channels: np.ndarray  # (C,) float32: each channel's attribution, Σ_xy act·grad
    spatial: np.ndarray  # (H, W) float32: each position's attribution, Σ_c act·grad
    dictionary_units: np.ndarray  # (H, W, k) int: the k most active channels per position
    dictionary_values: np.ndarray  # (H, W, k) float32: their activations
    group_spatial: np.ndarray  # (g, H, W) float32 ≥ 0: where each neuron group is
    group_channels: np.ndarray  # (g, C) float32 ≥ 0: each group's direction
    group_attribution: np.ndarray  # (g,) float32: each group's attribution to the score
    groups_note: str  # what was factorized (the positive part of a signed layer, say)
    ms: float  # its cost on the worker this frame


@dataclass(frozen=True, eq=False)
class AtlasRecord:
    """This frame on an activation atlas: each position of `layer` placed in its nearest
    cell (cosine to the cells' directions), weighted by its activation's norm."""

    layer: str
    folder: str  # the direction set whose cells these are (`AtlasView.folder`)
    weights: np.ndarray  # (cells,) float32: Σ of the norms of the positions in each cell
    cell_of: np.ndarray  # (H, W) int16: each position's cell, -1 where its activation is 0
    ms: float  # its cost on the worker this frame
