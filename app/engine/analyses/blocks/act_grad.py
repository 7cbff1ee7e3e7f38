"""Activation × gradient of a score at one layer, for whoever owns the forward.

The one helper every act × grad in the app goes through (captum's
`compute_layer_gradients_and_eval(forward_fn, layer, ...)` has the same shape): the caller
passes `run_edited`, its own forward with the layer's activation z replaced by `edit(z)`,
returning (output, z). `LayerAttributor` passes the forward of its private copy; the live
worker passes its recorded pass over the live model, so the building blocks come from the
pass that fills the grid. The edit here makes z a leaf that requires grad and lets a clone of
it flow on (in-place ops above, such as ResNet's `out += identity`, never touch the leaf), so
autograd records only what runs above the layer and one backward gives the gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from app.engine.analyses.blocks.score import BlocksError, Score, output_logits

Edit = Callable[[torch.Tensor], torch.Tensor]
RunEdited = Callable[[Edit], tuple[Any, torch.Tensor]]


@dataclass(frozen=True)
class LayerGradients:
    """One forward and backward, detached: the layer's activation and the score's gradient
    with respect to it ((N, C, H, W) or (N, C)), the logits (N, K) and the score (N,)."""

    activation: torch.Tensor
    gradient: torch.Tensor
    logits: torch.Tensor
    score: torch.Tensor

    def contributions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(channels (N, C), spatial (N, H, W)): act·grad summed over positions, over
        channels (a 2-D layer is one position)."""
        acts, grad = self.activation, self.gradient
        if acts.dim() == 2:
            acts, grad = acts[:, :, None, None], grad[:, :, None, None]
        prod = acts.float() * grad.float()
        return prod.sum((2, 3)), prod.sum(1)


def _leaf(z: torch.Tensor) -> torch.Tensor:
    z.requires_grad_(True)
    return z.clone()  # in-place ops downstream (ReLU(inplace)) write into this, not z


def layer_gradients(run_edited: RunEdited, score: Score, images: int) -> LayerGradients:
    """act × grad of `score` at the layer `run_edited` edits, for a batch of `images`.

    `run_edited(edit)` runs the caller's forward with the layer's (detached) activation z
    replaced by `edit(z)` and returns (output, z); BlocksError when the layer did not run.
    """
    with torch.enable_grad():
        output, z = run_edited(_leaf)
        logits = output_logits(output)
        value = score(output)
        if value.shape != (images,):
            raise BlocksError(f"a score must give one value per image, got "
                              f"{tuple(value.shape)} for {images} images")
        grad = None
        if value.requires_grad:  # else the score does not depend on the layer at all
            (grad,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    if grad is None:  # the score does not depend on this layer (a side branch)
        grad = torch.zeros_like(z)
    return LayerGradients(z.detach(), grad.detach(), logits.detach(), value.detach())
