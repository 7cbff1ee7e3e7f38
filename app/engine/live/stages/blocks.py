"""The building-blocks stage: the blocks inside the live pass, one extra backward per frame.

`LiveBlocks` attributes on a private copy, so with the blocks on a frame would cost the
worker's recorded forward plus the copy's forward and backward (about 2.1× a plain frame).
Here the recorded forward itself carries the gradient: the stage owns the pass and hands the
analyses' one act × grad helper (`layer_gradients`) its forward, the recorder's pass with a
hook on the shown layer that applies the helper's edit (the recorder has already kept the
original output). Autograd records only what runs above the layer, since the live model's
parameters are frozen (`freeze_parameters`).

In the pass only when nothing is deleted (deletion owns the pass then, forking the batch)
and the layer's module outputs a map; otherwise, and for good once the hook fails on a
model, the blocks come from `LiveBlocks`' second pass, which they must equal.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from app.core.messages import LOGITS
from app.core.results import BuildingBlocks
from app.core.view import BlocksView
from app.engine.analyses.blocks import BlocksError, ClassScore, LiveBlocks, NeuronGroups
from app.engine.analyses.blocks import neuron_groups as groups_of
from app.engine.analyses.blocks import semantic_dictionary as dictionary_of
from app.engine.analyses.blocks.act_grad import Edit, LayerGradients, layer_gradients
from app.engine.analyses.blocks.groups import DEFAULT_ITERATIONS
from app.engine.analyses.blocks.per_frame import WARM_ITERATIONS
from app.engine.live.stages.base import BaseStage, FramePass, StageContext
from app.engine.runtime.recorder import split_layer_name

log = logging.getLogger(__name__)


def freeze_parameters(module: nn.Module) -> None:
    """No gradient for the live model's weights: a backward then costs only the layers
    above the one explained (jobs work on private copies, which keep this)."""
    for p in module.parameters():
        p.requires_grad_(False)


class NotAMap(BlocksError):
    """The pass ran, but the shown layer's module gave no (N, C, H, W) map to differentiate."""


class BlocksStage(BaseStage):
    """Owns the pass while the blocks are shown in it; the warm start of the neuron groups
    and the second pass (`LiveBlocks`, made on the first frame that needs it)."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.in_pass = True  # False: always the second pass (what the in-pass must equal)
        self._second: LiveBlocks | None = None
        self._warm: tuple[str, NeuronGroups] | None = None
        freeze_parameters(ctx.loaded.module)  # a backward in the live pass stops at the layer

    def _wanted(self, frame: FramePass) -> BlocksView | None:
        view = frame.view.part(BlocksView)
        # a 1×1 layer (the logits) has no positions to explain
        if not view.on or self.error or self.ctx.layers[frame.layer].shape[1:] == (1, 1):
            return None
        return view

    def forward(self, frame: FramePass) -> torch.Tensor | None:
        view = self._wanted(frame)
        if view is None or not self.in_pass or frame.layer == LOGITS:
            return None
        t0 = time.perf_counter()
        outputs: list[Any] = []
        shown = self.ctx.source_of(frame.layer)  # a direction layer: its source runs
        try:
            with torch.enable_grad():
                g = layer_gradients(lambda edit: self._run_edited(frame, shown, edit, outputs),
                                    ClassScore(view.target, view.versus), 1)
        except NotAMap:  # the layer did not run as a map: the second pass explains it
            return self._detached(outputs[-1])
        except Exception as exc:  # a model the in-pass hook cannot handle: two passes
            log.info("building blocks in a second pass for %s: %s", frame.layer, exc)
            self.in_pass = False
            return None
        if shown != frame.layer:
            g = self._in_directions(frame.layer, g)
        frame.notes["blocks"] = self._blocks(frame.layer, view, g, t0)
        return self._detached(g.logits)

    def _in_directions(self, layer: str, g: LayerGradients) -> LayerGradients:
        """act × grad in unit space: codes_k times the gradient along direction k, so the
        units' shares plus the residual's add up to the source layer's."""
        assert self.ctx.directions is not None
        found = self.ctx.directions.layers[layer]
        codes = found.codes(g.activation)
        along = found.unit_gradient(g.gradient.float())
        return dataclasses.replace(g, activation=codes, gradient=along)

    def _run_edited(self, frame: FramePass, layer: str, edit: Edit,
                    outputs: list[Any]) -> tuple[Any, torch.Tensor]:
        """The recorder's pass with `layer`'s map z replaced by `edit(z)`."""
        name, call = split_layer_name(layer)
        caught: list[torch.Tensor] = []
        seen = 0

        def swap(_m: nn.Module, _inputs: Any, out: Any) -> Any:
            nonlocal seen
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                return None
            seen += 1
            if seen - 1 != call:
                return None
            z = out.detach()
            caught.append(z)
            return edit(z)

        def forward(t: torch.Tensor) -> Any:
            nonlocal seen
            seen = 0
            caught.clear()  # the recorder may run the pass twice (first frames)
            return self.ctx.loaded.module(t)

        model = self.ctx.loaded.module
        handle = model.get_submodule(name).register_forward_hook(swap)
        try:
            outputs.append(self.ctx.recorder.run(frame.x, forward))
        finally:
            handle.remove()
        if not caught:
            raise NotAMap(f"layer {layer!r} did not run as a map")
        return outputs[-1], caught[-1]

    def _detached(self, logits: torch.Tensor) -> torch.Tensor:
        # nothing downstream may hold the graph: the recorded maps above the layer are views
        # of tensors that required grad
        rec = self.ctx.recorder
        rec.activations = {k: v.detach() for k, v in rec.activations.items()}
        return logits.detach()

    def _blocks(self, layer: str, view: BlocksView, g: LayerGradients,
                t0: float) -> BuildingBlocks:
        channels, spatial = (t[0].cpu().numpy() for t in g.contributions())
        acts_np = g.activation[0].float().cpu().numpy()
        grad_np = g.gradient[0].float().cpu().numpy()
        words = dictionary_of(acts_np, self.ctx.dictionary_top)
        warm = self._warm[1] if self._warm is not None and self._warm[0] == layer else None
        found = groups_of(acts_np, self.ctx.groups, gradient=grad_np, warm=warm,
                          iterations=DEFAULT_ITERATIONS if warm is None else WARM_ITERATIONS)
        self._warm = (layer, found)
        target = int(ClassScore(view.target, view.versus).targets(g.logits)[0])
        probs = torch.softmax(g.logits[0].float(), 0)
        attribution = (found.attribution if found.attribution is not None
                       else np.zeros(found.k, np.float32))
        return BuildingBlocks(
            layer, target, view.versus, float(g.score[0]), float(probs[target]),
            channels.astype(np.float32), spatial.astype(np.float32), words.units,
            words.values, found.spatial, found.channels, attribution.astype(np.float32),
            found.note, (time.perf_counter() - t0) * 1e3)

    def record(self, frame: FramePass) -> BuildingBlocks | None:
        found = frame.notes.get("blocks")
        if isinstance(found, BuildingBlocks):
            return found
        view = self._wanted(frame)
        if view is None or self.ctx.is_direction(frame.layer):
            return None  # direction units: in the pass only (not while units are deleted)
        return self._second_pass(frame, view)

    def _second_pass(self, frame: FramePass, view: BlocksView) -> BuildingBlocks | None:
        """The blocks from one more forward and backward (on the attributor's private
        copy), a sort and a warm-started NMF."""
        t0 = time.perf_counter()
        try:
            if self._second is None:
                self._second = LiveBlocks(self.ctx.loaded, groups=self.ctx.groups,
                                          dictionary_top=self.ctx.dictionary_top)
            with torch.enable_grad():
                f = self._second.process(frame.x, frame.layer,
                                         ClassScore(view.target, view.versus))
        except Exception as exc:  # a model the blocks cannot handle: say so once, go on
            self.error = f"explanation unavailable: {exc}".splitlines()[0]
            return None
        a, words, groups = f.attribution, f.dictionary, f.groups
        assert words is not None and groups is not None
        target = a.target if a.target is not None else int(np.argmax(a.logits))
        g = groups.attribution if groups.attribution is not None else np.zeros(groups.k)
        return BuildingBlocks(
            frame.layer, target, a.vs, a.score, a.probability, a.channels, a.spatial,
            words.units, words.values, groups.spatial, groups.channels,
            g.astype(np.float32), groups.note, (time.perf_counter() - t0) * 1e3)
