"""Attribution of a score to the units of one layer: activation × gradient (Building Blocks).

Olah et al. 2018 attribute a class to a layer with the linear approximation: a unit's share
of the score is its activation times the score's gradient with respect to it. Summed over
positions that is a channel's attribution, summed over channels a position's; both come from
the same product, so one forward and one backward give them all.

How it runs. The work happens on a private copy of the model (`private_copy`: frozen, no
hooks; batch norms folded and channels-last when `fast`), so the live model, its recorder
hooks and its state are never touched. A forward hook on the layer's module swaps its output
for a detached copy `z` that requires grad: autograd then records nothing below the layer,
and the backward of `score(output)` stops at `z`. A frame's attribution therefore costs one
forward (the part below the layer without autograd) and the backward of the part above.
Hooks come off in `finally`, always. A module run several times per pass is addressed as the
recorder names it (`name:k`, its k-th 4-D output); a module with no 4-D output (a classifier's
`fc`) by its name alone, its first tensor output then being the layer.

`run_edited` is the general tool the other analyses use: the model's output with the
layer's activation replaced by any function of it. That function may turn the one image's
(1, C, H, W) activation into a batch (scaled copies along an integration path, copies with
channels deleted), so the layers below run once for the whole batch. Whether the rest of the
network accepts such a batch (a skip connection from below the layer has batch 1) is checked
once per layer against the same batch made by repeating the input; where it differs or
fails, the input is repeated.

A direction layer (`L@nmf32`, a concept dictionary; `runtime.directions`) is attributed on
its source: one forward and backward there give a and ∂score/∂a, and with the codes and the
unit gradients w_k·∂score/∂a the concept attributions are codes_k × (w_k · grad) — act ×
grad in concept space. Codes, residual and rest add up to a, so the concepts' attributions
plus the residual's ((residual + rest) · grad, `LayerAttribution.residual`) are exactly the
source's total act × grad. Deleting concepts subtracts their components from the source.

A batch norm folded into the conv it follows changes that conv's output; where such a conv is
the layer, the hook maps its output back (`z = (out − shift) / scale`) and forward again, so
activations, gradients and deletions are those of the user's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from app.engine.analyses.blocks.act_grad import Edit, LayerGradients, layer_gradients
from app.engine.analyses.blocks.score import BlocksError, ClassScore, Score, output_logits
from app.engine.runtime.directions import DirectionLayer, is_direction_layer
from app.engine.runtime.layout import as_map, from_map, input_size, layout_of, split_part
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import split_layer_name
from app.engine.runtime.truncate import (
    LayerNotReached,
    NotATensor,
    UnknownLayer,
    forward_to,
    private_copy,
    speed_up_copy,
)


@dataclass(frozen=True)
class LayerAttribution:
    """A score attributed to one layer's units for one image (a 2-D layer: H = W = 1)."""

    layer: str
    target: int | None  # the class explained (None: a score that is not a ClassScore)
    vs: int | None  # the class it is contrasted with
    score: float
    logits: np.ndarray  # (K,) float32, the model's output for the image
    activations: np.ndarray  # (C, H, W) float32
    gradient: np.ndarray  # (C, H, W) float32, ∂score/∂activation
    channels: np.ndarray  # (C,) float32, Σ_xy act·grad
    spatial: np.ndarray  # (H, W) float32, Σ_c act·grad
    residual: float = 0.0  # a direction layer: what its codes miss, (residual + rest)·grad

    @property
    def probability(self) -> float:
        """Softmax probability of `target` in the intact output (nan without a target)."""
        return class_probability(self.logits, self.target)

    def ranked(self) -> np.ndarray:
        """(C,) channel indices, attribution high to low (ties: lower index first)."""
        return np.argsort(-self.channels, kind="stable")


def class_probability(logits: np.ndarray, target: int | None) -> float:
    """softmax(logits)[target] for (K,) logits; nan when there is no target."""
    if target is None:
        return float("nan")
    z = logits.astype(np.float64) - float(logits.max())
    return float(np.exp(z[target]) / np.exp(z).sum())


def fixed_target(score: Score, logits: torch.Tensor) -> Score:
    """`score` with "each image's top-1" made the top-1 of these (1, K) logits.

    Paths and deletions change the output; the class explained must stay the intact one.
    """
    if isinstance(score, ClassScore) and score.target is None:
        return ClassScore(int(logits[0].argmax()), score.vs)
    return score


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().contiguous().cpu().numpy()


class LayerAttributor:
    """Attributes a score of the model's output to the units of one layer, per call.

    Build once per model; call `attribute` per frame (any layer, any score). The first call
    deep-copies the model (one model's worth of memory). Not thread-safe: use it from the
    thread that owns it (the inference worker, or a job).

    Examples::

        att = LayerAttributor(loaded)
        a = att.attribute(x, "_blocks.7", ClassScore(281))      # x: (1, 3, 224, 224)
        a.channels.argmax(), a.spatial.shape                     # a unit, (14, 14)
    """

    def __init__(self, model: LoadedModel | nn.Module, fast: bool = True) -> None:
        self._source = model.module if isinstance(model, LoadedModel) else model
        self._model: nn.Module | None = None
        self._fast = fast
        self._folded: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._dims: dict[str, int] = {}  # layer → 4 (a feature map) or 2, learned once
        self._expand: dict[str, bool] = {}  # layer → a batch made at the layer is exact
        self.directions: dict[str, DirectionLayer] = {}  # direction layers it may attribute

    @property
    def folded_convs(self) -> int:
        """How many convolutions of the private copy have their batch norm folded in: 0 until
        the first call, and always 0 when not `fast`."""
        return len(self._folded)

    def batches_at_layer(self, layer: str) -> bool | None:
        """Whether a batch made from `layer`'s activation runs exactly as repeating the input
        does (False: `run_batched` repeats the input instead); None: not checked yet."""
        return self._expand.get(layer)

    # -- the private copy and the layer ------------------------------------------------

    def _private_model(self, x: torch.Tensor) -> nn.Module:
        if self._model is None:
            model = private_copy(self._source, x.device)
            if self._fast:
                with torch.inference_mode(False):
                    speed_up_copy(model, x[:1].detach().clone(),
                                  lambda m, t: output_logits(m(t)), x.device,
                                  folded=self._folded)
            self._model = model
        return self._model

    def layer_dims(self, x: torch.Tensor, layer: str) -> int:
        """4 for a (N, C, H, W) layer, 2 for (N, C); BlocksError for anything else."""
        dims = self._dims.get(layer)
        if dims is not None:
            return dims
        model = self._private_model(x)
        try:
            with torch.no_grad():
                out = forward_to(model, layer, x[:1])
        except UnknownLayer:
            raise BlocksError(
                f"no layer named {split_layer_name(layer)[0]!r} in the model") from None
        except LayerNotReached:
            raise BlocksError(f"layer {layer!r} was not run by the forward pass") from None
        except NotATensor:
            raise BlocksError(f"layer {layer!r} has no (N, C[, H, W]) output") from None
        if out.dim() not in (2, 4):
            raise BlocksError(f"layer {layer!r} has no (N, C[, H, W]) output")
        self._dims[layer] = out.dim()
        return out.dim()

    def run_edited(self, x: torch.Tensor, layer: str, edit: Edit) -> tuple[Any, torch.Tensor]:
        """(model output, z): the forward of `x` with the layer's activation z replaced by
        `edit(z)`. z is detached (a leaf: nothing below the layer is differentiated) and is
        the user's model's activation, (N, C, H, W) or (N, C); `edit` may change N.

        Runs under the caller's grad mode; x must not be an inference tensor.
        """
        model = self._private_model(x)
        dims = self.layer_dims(x, layer)
        name, wanted = split_layer_name(layer)
        part = split_part(layer)[1]
        input_hw = input_size(x)
        target = model.get_submodule(name)
        affine = self._folded.get(target)
        shape = (1, -1) + (1,) * (dims - 2)
        seen = 0
        caught: list[torch.Tensor] = []

        def hook(m: nn.Module, _inputs: Any, out: Any) -> Any:
            nonlocal seen
            if caught:
                return None
            # a 4-D layer is the recorder's map of whatever layout the module outputs
            # (tokens, channels-last): z is that map, and the edit is written back into it
            layout = layout_of(out, m, input_hw) if dims == 4 else None
            if dims == 4:
                if layout is None:
                    return None
                if seen != wanted:
                    seen += 1
                    return None
                view = as_map(out, layout, part)
            elif isinstance(out, torch.Tensor) and out.dim() == dims:
                view = out
            else:
                return None
            if affine is None:  # a copy: an in-place op downstream must not reach z
                z = view.detach().clone()
            else:  # a conv with its batch norm folded in outputs bn(z)
                z = ((view - affine[1].view(shape)) / affine[0].view(shape)).detach()
            caught.append(z)
            new = edit(z)
            if affine is not None:
                new = new * affine[0].view(shape) + affine[1].view(shape)
            return new if layout is None else from_map(out, layout, new, part)

        handle = target.register_forward_hook(hook)
        try:
            output = model(x)
        finally:
            handle.remove()
        if not caught:
            raise BlocksError(f"layer {layer!r} was not run by the forward pass")
        return output, caught[0]

    def run_batched(self, x: torch.Tensor, layer: str, make: Edit) -> tuple[Any, torch.Tensor]:
        """`run_edited` for one image whose edit makes a batch: `make` maps the (1, C, …)
        activation to (B, C, …). → (output with B rows, the (1, C, …) activation)."""
        if x.shape[0] != 1:
            raise BlocksError(f"expected a (1, 3, H, W) input, got {tuple(x.shape)}")
        if self._expands(x, layer):
            return self.run_edited(x, layer, make)
        # the network cannot take a batch made at the layer: make it from the input
        b = make(self._activation(x, layer)).shape[0]
        output, z = self.run_edited(x.expand(b, *x.shape[1:]), layer,
                                    lambda z: make(z[:1]))
        return output, z[:1]

    def _activation(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        with torch.no_grad():
            return self.run_edited(x, layer, lambda z: z)[1]

    def _expands(self, x: torch.Tensor, layer: str) -> bool:
        ok = self._expand.get(layer)
        if ok is None:
            scale = torch.tensor([1.0, 0.5], device=x.device)

            def make(z: torch.Tensor) -> torch.Tensor:
                return z[:1] * scale.view(-1, *([1] * (z.dim() - 1)))

            self.layer_dims(x, layer)  # a bad layer is the caller's error, not a misfit
            with torch.no_grad():
                try:
                    made = output_logits(self.run_edited(x, layer, make)[0])
                    ok = made.shape[0] == 2
                except Exception:  # a concat or a view that wants batch 1 below: no fit
                    ok = False
                if ok:
                    rep = output_logits(self.run_edited(x.expand(2, *x.shape[1:]), layer,
                                                        make)[0])
                    ok = bool(torch.allclose(made, rep, rtol=1e-4,
                                             atol=1e-5 * float(rep.abs().max()) + 1e-6))
            self._expand[layer] = ok
        return ok

    # -- attribution --------------------------------------------------------------------

    def gradients(self, x: torch.Tensor, layer: str, score: Score
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(activation, gradient, logits, score), on x's device: one forward, one backward.

        activation and gradient (N, C, H, W) or (N, C); logits (N, K); score (N,).
        """
        if x.dim() != 4:
            raise BlocksError(f"expected a (N, 3, H, W) input, got {tuple(x.shape)}")
        with torch.inference_mode(False):
            inp = x.detach().clone()  # an inference-mode frame cannot enter autograd
            g = layer_gradients(lambda edit: self.run_edited(inp, layer, edit), score,
                                x.shape[0])
        return g.activation, g.gradient, g.logits, g.score

    def attribute(self, x: torch.Tensor, layer: str, score: Score) -> LayerAttribution:
        """Channel and spatial attribution of `score` at `layer` for a (1, 3, H, W) input."""
        if x.dim() != 4 or x.shape[0] != 1:
            raise BlocksError(f"expected a (1, 3, H, W) input, got {tuple(x.shape)}")
        return self.attribute_batch(x, layer, score)[0]

    def direction(self, layer: str) -> DirectionLayer | None:
        """The direction layer `layer` names (None for a plain layer)."""
        if not is_direction_layer(layer):
            return None
        if layer not in self.directions:
            raise BlocksError(f"no direction set given for {layer!r}")
        return self.directions[layer]

    def attribute_batch(self, x: torch.Tensor, layer: str, score: Score
                        ) -> tuple[LayerAttribution, ...]:
        """One LayerAttribution per image of a (N, 3, H, W) batch, from one pass."""
        d = self.direction(layer)
        acts, grad, logits, value = self.gradients(x, d.set.source if d else layer, score)
        residual = torch.zeros(x.shape[0])
        if d is not None:
            parts = d.decompose(acts)
            residual = ((parts.residual + parts.rest).float() * grad.float()).sum((1, 2, 3))
            acts, grad = parts.codes, d.unit_gradient(grad)
        channels, spatial = LayerGradients(acts, grad, logits, value).contributions()
        if acts.dim() == 2:  # a 2-D layer is one position
            acts, grad = acts[:, :, None, None], grad[:, :, None, None]
        targets = (score.targets(logits).tolist() if isinstance(score, ClassScore)
                   else [None] * x.shape[0])
        vs = score.vs if isinstance(score, ClassScore) else None
        a, g, c, s = (_numpy(t) for t in (acts, grad, channels, spatial))
        lg, v = _numpy(logits), _numpy(value)
        return tuple(
            LayerAttribution(layer, targets[i], vs, float(v[i]), lg[i], a[i], g[i], c[i], s[i],
                             float(residual[i]))
            for i in range(x.shape[0]))

    def deleted_probabilities(self, x: torch.Tensor, layer: str, target: int,
                              unit_sets: list[list[int]], batch_size: int = 32) -> np.ndarray:
        """(S,) probability of class `target` with each set of channels zeroed at `layer`.

        An empty set is the intact network. One (1, 3, H, W) input; the sets run as batches
        made at the layer, so the layers below run once per batch.
        """
        out: list[np.ndarray] = []
        d = self.direction(layer)
        with torch.inference_mode(False), torch.no_grad():
            inp = x.detach().clone()
            for start in range(0, len(unit_sets), batch_size):
                chunk = unit_sets[start:start + batch_size]

                def remove(z: torch.Tensor, chunk: list[list[int]] = chunk) -> torch.Tensor:
                    assert d is not None
                    codes = d.codes(z)
                    return torch.cat([z - d.component(codes, units) for units in chunk])

                def make(z: torch.Tensor, chunk: list[list[int]] = chunk) -> torch.Tensor:
                    keep = torch.ones(len(chunk), z.shape[1], device=z.device, dtype=z.dtype)
                    for row, units in enumerate(chunk):
                        if units:
                            keep[row, list(units)] = 0.0
                    return z * keep.view(*keep.shape, *([1] * (z.dim() - 2)))

                if d is not None:
                    output, _ = self.run_batched(inp, d.set.source, remove)
                else:
                    output, _ = self.run_batched(inp, layer, make)
                out.append(_numpy(torch.softmax(output_logits(output).float(), 1)[:, target]))
        return np.concatenate(out) if out else np.zeros(0, np.float32)
