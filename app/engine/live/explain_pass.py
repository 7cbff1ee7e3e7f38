"""The building blocks inside the live pass: one extra backward per frame, not a second pass.

`LiveBlocks` attributes on a private copy, so with the blocks on a frame cost the worker's
recorded forward plus the copy's forward and backward (about 2.1× a plain frame). Here the
recorded forward itself carries the gradient: a hook on the shown layer swaps its output for
a leaf that requires grad (the recorder has already kept the original), autograd records
only what runs above it (the live model's parameters are frozen), and one backward from the
class score to that leaf gives act × grad. Its clone is what flows on, so in-place ops above
(ResNet's `out += identity`, in-place ReLUs) never touch the leaf.

Used when nothing is deleted (deletions fork the batch into intact and ablated halves); the
worker falls back to `LiveBlocks` then, and for layers whose output is not a map.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from app.core.messages import Explanation, ViewState
from app.engine.analyses.blocks import ClassScore, NeuronGroups, neuron_groups
from app.engine.analyses.blocks import semantic_dictionary as dictionary_of
from app.engine.analyses.blocks.groups import DEFAULT_ITERATIONS
from app.engine.analyses.blocks.per_frame import WARM_ITERATIONS
from app.engine.runtime.recorder import ActivationRecorder, split_layer_name


def freeze_parameters(module: nn.Module) -> None:
    """No gradient for the live model's weights: a backward then costs only the layers
    above the one explained (jobs work on private copies, which keep this)."""
    for p in module.parameters():
        p.requires_grad_(False)


class InPassExplainer:
    """Runs the recorded forward with the shown layer made differentiable; owns the warm
    start of the neuron groups (one thread: the worker's)."""

    def __init__(self, model: nn.Module, recorder: ActivationRecorder,
                 dictionary_top: int, groups: int) -> None:
        self.model = model
        self.recorder = recorder
        self.dictionary_top = dictionary_top
        self.groups = groups
        self._warm: tuple[str, NeuronGroups] | None = None

    def run(self, x: torch.Tensor, view: ViewState,
            layer: str) -> tuple[torch.Tensor, Explanation | None]:
        """(logits, explanation of `layer`) for the (1, 3, H, W) input, in one recorded pass
        and one backward; the explanation is None when the layer did not run as a map."""
        t0 = time.perf_counter()
        name, call = split_layer_name(layer)
        state: dict[str, Any] = {}

        def swap(_m: nn.Module, _inputs: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                return None
            seen = state.get("seen", 0)
            state["seen"] = seen + 1
            if seen != call:
                return None
            leaf = out.detach().requires_grad_(True)
            state["leaf"] = leaf
            return leaf.clone()

        def forward(t: torch.Tensor) -> Any:
            state.clear()  # the recorder may run the pass twice (first frames)
            return self.model(t)

        handle = self.model.get_submodule(name).register_forward_hook(swap)
        try:
            with torch.enable_grad():
                logits = self.recorder.run(x, forward)
                leaf = state.get("leaf")
                if leaf is None or not logits.requires_grad:
                    return logits.detach(), None
                score = ClassScore(view.explained_class, view.versus_class)
                value = score(logits)
                (grad,) = torch.autograd.grad(value.sum(), leaf, allow_unused=True)
        finally:
            handle.remove()
        # nothing downstream may hold the graph: the recorded maps above the layer are views
        # of tensors that required grad
        self.recorder.activations = {k: v.detach() for k, v in self.recorder.activations.items()}
        logits = logits.detach()
        acts = leaf.detach()[0].float()
        g = torch.zeros_like(acts) if grad is None else grad[0].float()
        contrib = acts * g
        both = torch.cat([contrib.sum((1, 2)), contrib.flatten()]).cpu().numpy()
        c, h, w = acts.shape
        channels, spatial = both[:c], both[c:].reshape(c, h, w).sum(0)
        acts_np, g_np = acts.cpu().numpy(), g.cpu().numpy()
        words = dictionary_of(acts_np, self.dictionary_top)
        warm = self._warm[1] if self._warm is not None and self._warm[0] == layer else None
        found = neuron_groups(acts_np, self.groups, gradient=g_np, warm=warm,
                              iterations=DEFAULT_ITERATIONS if warm is None else WARM_ITERATIONS)
        self._warm = (layer, found)
        targets = score.targets(logits)
        target = int(targets[0])
        probs = torch.softmax(logits[0].float(), 0)
        attribution = (found.attribution if found.attribution is not None
                       else np.zeros(found.k, np.float32))
        return logits, Explanation(
            layer, target, view.versus_class, float(value.detach()[0]),
            float(probs[target]), channels.astype(np.float32), spatial.astype(np.float32),
            words.units, words.values, found.spatial, found.channels,
            attribution.astype(np.float32), found.note, (time.perf_counter() - t0) * 1e3)
