"""The shape of a live stage: what one per-frame feature of the worker looks like.

A stage reads its own part of the view (`frame.view.part(AttentionView)`) and may, per frame:

- `prepare`: change the frame before the network sees it (the grayscale input);
- `around`: give a context the recorded pass runs in (hooks, probes) — attention's probe
  rides on the pass this way, and deletion syncs its hooks to the view before it;
- `forward`: own the recorded pass and return the logits, or None to leave it — deletion
  forks the batch into intact and ablated halves, the in-pass building blocks make the
  shown layer differentiable; the first stage that takes it runs it;
- `record`: add its sub-record to the result (`app/core/results.py`), or None;
- `needs`: the recorded layers it reads besides the shown one (the recorder keeps only
  those a frame needs).

Stages run on the worker's thread only, in the registered order (`stages/__init__.py`). A
stage that cannot work on this model says why once in `error` (reported to the user) and
stops asking; a new live feature is a new stage, a new view part and a new record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from app.core.messages import LayerInfo, Prediction
from app.core.view import ViewState
from app.engine.live.directions import DirectionLayers
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import ActivationRecorder


@dataclass(frozen=True)
class StageContext:
    """What a stage is built from: the live model, the worker's recorder, its layers."""

    loaded: LoadedModel
    recorder: ActivationRecorder
    layers: dict[str, LayerInfo]
    top: Callable[[torch.Tensor], tuple[Prediction, ...]]  # (1, K) logits → the top-k
    top_k_frames: int = 9
    dictionary_top: int = 4
    groups: int = 6
    directions: DirectionLayers | None = None  # the view's direction layers (not modules)

    def source_of(self, layer: str) -> str:
        """The module layer a shown layer is computed from (a direction layer's source)."""
        return layer if self.directions is None else self.directions.source_of(layer)

    def is_direction(self, layer: str) -> bool:
        return self.directions is not None and layer in self.directions.layers


@dataclass
class FramePass:
    """One frame as the stages see it; `logits` and `acts` are filled after the pass."""

    x: torch.Tensor  # (1, 3, S, S): the frame as the model sees it
    image: np.ndarray  # the frame (H, W, 3) uint8
    crop: tuple[int, int, int, int]  # (x, y, w, h) of the region the model saw
    view: ViewState
    layer: str  # the shown layer, resolved
    unit: int
    frame_id: int | None  # None: a re-render of a frame already seen
    logits: torch.Tensor | None = None  # (1, K), of the ablated net while units are deleted
    acts: torch.Tensor | None = None  # (C, H, W): the shown layer, as the network receives it
    notes: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    """One per-frame feature of the live worker."""

    error: str | None  # why the stage is off for this model, told to the user once

    def prepare(self, image: np.ndarray, view: ViewState) -> np.ndarray: ...

    def around(self, frame: FramePass) -> contextlib.AbstractContextManager[Any]: ...

    def forward(self, frame: FramePass) -> torch.Tensor | None: ...

    def record(self, frame: FramePass) -> object | None: ...

    def needs(self, view: ViewState) -> tuple[str, ...]: ...

    def close(self) -> None: ...


class BaseStage:
    """No context, no forward, no record, nothing to close: stages override what they use."""

    error: str | None = None

    def prepare(self, image: np.ndarray, view: ViewState) -> np.ndarray:
        return image

    def around(self, frame: FramePass) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def forward(self, frame: FramePass) -> torch.Tensor | None:
        return None

    def record(self, frame: FramePass) -> object | None:
        return None

    def needs(self, view: ViewState) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        return None
