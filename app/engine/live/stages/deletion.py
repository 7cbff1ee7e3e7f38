"""The deletion stage: units deleted in the live view, and what the intact network says.

Deletion hooks run before the recorder's, so the grid shows what the rest of the network
receives; with nothing deleted they cost one dictionary lookup. Units of a direction layer
(concepts, CAVs, atlas cells) are deleted by the same `Ablation` on their source layer
(their components taken out, `DirectionLayer.delete`), so they fork, pause and take the
mean mode like channels do. While units are deleted the
stage owns the recorded pass: one forked pass (~1.1 forwards; the batch splits into intact
and ablated halves at the first deleted layer) where the model allows it, else two, and the
intact network's top-k become the frame's `DeletionRecord`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from app.core.messages import AblationMode, Prediction
from app.core.results import DeletionRecord
from app.core.view import DeletionView
from app.engine.analyses.ablation.deletion import (
    Ablation,
    ForkError,
    RunningChannelMeans,
    fork_safe,
)
from app.engine.live.stages.base import BaseStage, FramePass, StageContext

log = logging.getLogger(__name__)

Deleted = tuple[tuple[str, tuple[int, ...]], ...]


class DeletionStage(BaseStage):
    """Keeps the deletion hooks in step with the view; owns the pass while units are gone."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.ablation = self._ablation(AblationMode.ZERO)
        self._ablated: Deleted = ()
        # the deletions a forked pass failed on (a parallel branch): two passes for those
        self._fork_refused: Deleted | None = None
        self._fork_safe = fork_safe(ctx.loaded.module)
        self.fork = True  # False: always two passes (what a forked one must equal)

    @property
    def fork_refused(self) -> Deleted | None:
        """The deletions the forked pass could not handle (run in two passes), if any."""
        return self._fork_refused

    def close(self) -> None:
        self.ablation.remove_hooks()

    def _ablation(self, mode: AblationMode) -> Ablation:
        directions = self.ctx.directions
        return Ablation(self.ctx.loaded.module, mode=mode, directions=(
            None if directions is None else dict(directions.layers))).__enter__()

    def _know_directions(self) -> None:
        """Direction layers added since (a job's) become deletable too."""
        if self.ctx.directions is not None:
            for name, layer in self.ctx.directions.layers.items():
                if self.ablation.directions.get(name) is not layer:
                    self.ablation.add_direction_layer(layer)

    def around(self, frame: FramePass) -> contextlib.AbstractContextManager[Any]:
        view = frame.view.part(DeletionView)
        if view.mode != self.ablation.mode:
            self.ablation.remove_hooks()
            self.ablation = self._ablation(view.mode)
            self._ablated = ()
        self._know_directions()
        if view.ablated != self._ablated:
            self.ablation.clear()
            for name, units in view.ablated:
                if name in self.ctx.layers:
                    limit = self.ctx.layers[name].shape[0]
                    self.ablation.set(name, [u for u in units if 0 <= u < limit])
            self._ablated = view.ablated
        if view.mode == AblationMode.MEAN:
            self.ablation.watch(frame.layer)  # gather its means before a unit of it is deleted
        return contextlib.nullcontext()

    def forward(self, frame: FramePass) -> torch.Tensor | None:
        """The ablated logits (1, classes); the intact network's top-k go to the record."""
        ablated = frame.view.part(DeletionView).ablated
        if not ablated:
            return None
        rec, x = self.ctx.recorder, frame.x
        if self.fork and self._fork_safe and self._fork_refused != ablated:
            means = self.ablation.means
            state = means.snapshot() if isinstance(means, RunningChannelMeans) else None
            try:
                with self.ablation.forked():
                    both = rec.run(x)
                frame.notes["intact"] = self.ctx.top(both[:1])
                return both[-1:]
            except (ForkError, RuntimeError) as exc:
                if state is not None and isinstance(means, RunningChannelMeans):
                    means.restore(state)  # the frame counts once
                if "out of memory" in str(exc):
                    raise  # a real failure, not a model the fork cannot handle
                # a deleted unit on a branch the doubled batch does not reach, or a merge of
                # such a branch with it: correct results need two passes for these deletions
                log.info("live ablation in two passes for %s: %s", ablated, exc)
                self._fork_refused = ablated
        with self.ablation.paused():
            frame.notes["intact"] = self.ctx.top(rec.run(x))
        out: torch.Tensor = rec.run(x)
        return out

    def record(self, frame: FramePass) -> DeletionRecord | None:
        intact: tuple[Prediction, ...] | None = frame.notes.get("intact")
        return None if intact is None else DeletionRecord(intact)
