"""Immutable messages that cross threads: capture → worker → GUI, and GUI → worker.

Everything here is plain numpy and stdlib so the GUI never needs torch to read a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from app.core.tiling import GridGeometry


@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB frame from a source."""

    image: np.ndarray  # (H, W, 3) uint8, RGB
    index: int  # sequence number within the source (folder: the file's position)
    timestamp: float  # time.perf_counter() when it was captured
    source: str  # what produced it, for display: "camera 0", "cat.jpg"


class Normalization(StrEnum):
    PER_CHANNEL = "per_channel"
    PER_LAYER = "per_layer"


@dataclass(frozen=True)
class ViewState:
    """What the user is looking at; the GUI sends a new one on every change."""

    layer: str | None = None  # dotted module name; None: the model's default layer
    unit: int = 0
    normalization: Normalization = Normalization.PER_CHANNEL
    frozen: bool = False
    grid_aspect: float = 1.0  # width / height of the grid pane, so the mosaic fills it


@dataclass(frozen=True)
class LayerInfo:
    """A recordable layer: dotted name, output shape without batch, module type."""

    name: str
    shape: tuple[int, ...]
    kind: str

    @property
    def channels(self) -> int:
        return self.shape[0]

    def describe(self) -> str:
        return f"{self.name}  {'×'.join(str(s) for s in self.shape)}  ({self.kind})"


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


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
    predictions: tuple[Prediction, ...]
    latency_ms: float  # capture timestamp → result ready
    compute_ms: float  # preprocessing + forward + tiling on the worker
    fps: float  # results per second over the last second or so
    dropped_frames: int  # frames the worker never saw (capture outran it)
    device: str
    model: str
    frozen: bool = False


class NoticeLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Notice:
    """A one-line message for the status bar / log."""

    text: str
    level: NoticeLevel = NoticeLevel.INFO


@dataclass(frozen=True)
class ModelReady:
    """A model finished loading; the GUI rebuilds its layer list from it."""

    name: str
    layers: tuple[LayerInfo, ...]
    default_layer: str
    device: str
    num_classes: int


@dataclass(frozen=True)
class SourceReady:
    """A source opened; `count` is the number of items for a folder, else 1 (or 0: live)."""

    label: str
    kind: str  # "camera", "video", "image", "folder"
    count: int = 0
    position: int = 0


@dataclass(frozen=True)
class ModelChoice:
    """A model the user can pick, and whether it works without a network."""

    name: str
    description: str
    offline: bool
    extras: tuple[str, ...] = field(default_factory=tuple)
