"""Where in the input a unit's response comes from: gradient, deconvnet, guided backprop.

The three modes differ only in what the backward pass does at a rectifier (ReLU, ReLU6):

- ``gradient``: the true gradient, passed where the forward input was in the linear part
  (0 < x, and x < 6 for ReLU6) — Simonyan et al.'s saliency.
- ``deconvnet``: Zeiler & Fergus's reconstruction rectifies the *backward signal* and
  ignores the forward input entirely: max(g, 0). No forward gate means ReLU6's upper
  clamp plays no part either.
- ``guided``: guided backprop (Springenberg et al.) passes a signal only where both rules
  agree: positive signal *and* the forward input in the linear part (0 < x < 6 for ReLU6),
  i.e. max(g, 0) · gate(x).

Everything else (convolutions, batch norm, additions of residual branches, pooling, other
nonlinearities such as Hardswish or SiLU) back-propagates its true gradient in every mode.

The work happens on a private deep copy of the model (hooks stripped, rectifier modules
swapped for non-in-place ones with the mode's backward), so the live model, its hooks and
its recorded activations are never touched. The forward stops at the target layer: a hook
there keeps the output and raises, so one attribution costs the layers below the target
once forward (with autograd) and once backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from app.core.messages import AttributionMode
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

# the rules that attribute (OFF only means "compute nothing", and is the live view's)
MODES: tuple[AttributionMode, ...] = (
    AttributionMode.GRADIENT, AttributionMode.DECONVNET, AttributionMode.GUIDED)


class AttributionError(ValueError):
    """A layer, unit, position or model attribution cannot work with; one line for the user."""


# -- the rectifier with a per-mode backward ------------------------------------------------

class _Rectify(torch.autograd.Function):
    """clamp(x, 0, upper) forward; backward by `rule` (one of MODES)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float, rule: str) -> torch.Tensor:
        ctx.upper, ctx.rule = upper, rule
        if rule != "deconvnet":
            ctx.save_for_backward(x)
        return x.clamp_min(0.0) if math.isinf(upper) else x.clamp(0.0, upper)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.rule == "deconvnet":
            return grad.clamp_min(0.0), None, None
        (x,) = ctx.saved_tensors
        signal = grad if ctx.rule == "gradient" else grad.clamp_min(0.0)
        # the fused kernels autograd itself uses for ReLU / ReLU6: grad where 0 < x (< upper)
        if math.isinf(ctx.upper):
            return torch.ops.aten.threshold_backward(signal, x, 0.0), None, None
        return torch.ops.aten.hardtanh_backward(signal, x, 0.0, ctx.upper), None, None


class RectifierWithRule(nn.Module):
    """Stand-in for nn.ReLU / nn.ReLU6 whose backward follows an attribution mode."""

    def __init__(self, upper: float, rule: str) -> None:
        super().__init__()
        self.upper = upper
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Rectify.apply(x, self.upper, self.rule)

    def extra_repr(self) -> str:
        return f"upper={self.upper}, rule={self.rule}"


def _rectifier_upper(module: nn.Module) -> float | None:
    """The upper clamp of a rectifier module (inf for ReLU), None for anything else."""
    if isinstance(module, nn.ReLU):
        return math.inf
    if isinstance(module, nn.Hardtanh) and module.min_val == 0.0:  # ReLU6 is a Hardtanh
        return float(module.max_val)
    return None


def swap_rectifiers(model: nn.Module, rule: str) -> int:
    """Replace every ReLU/ReLU6 module of `model` (in place) by a RectifierWithRule."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            upper = _rectifier_upper(child)
            if upper is not None:
                setattr(parent, name, RectifierWithRule(upper, rule))
                swapped += 1
    return swapped


# the aten overloads are what a torch.export program's graph calls (no nn.ReLU modules)
_FUNCTIONAL_RELU = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu,
                    torch.Tensor.relu_, torch.ops.aten.relu.default, torch.ops.aten.relu_.default}
_FUNCTIONAL_CLAMP = {F.relu6, F.hardtanh, F.hardtanh_, torch.ops.aten.hardtanh.default,
                     torch.ops.aten.hardtanh_.default}


class _FunctionalRectifiers(TorchFunctionMode):
    """Routes functional ReLU calls (`F.relu(x)` inside a forward) through `_Rectify`.

    Only used for models that call them (found by a probe pass): every torch call goes
    through Python while this mode is on, which costs ~15 % of a forward.
    """

    def __init__(self, rule: str | None) -> None:
        super().__init__()
        self.rule = rule  # None: only count the calls
        self.calls = 0

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        upper: float | None = None
        if func in _FUNCTIONAL_RELU:
            upper = math.inf
        elif func in _FUNCTIONAL_CLAMP:
            if func is F.relu6:
                upper = 6.0
            else:
                lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
                hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
                upper = float(hi) if lo == 0.0 else None
        if upper is None:
            return func(*args, **kwargs)
        self.calls += 1
        if self.rule is None:
            return func(*args, **kwargs)
        return _Rectify.apply(args[0], upper, self.rule)


# -- the attributor ------------------------------------------------------------------------

@dataclass(frozen=True)
class Attribution:
    """One attribution of a unit to the input pixels (input = the model's crop)."""

    saliency: np.ndarray  # (H, W) float32, max over colour channels of |signal|
    signal: np.ndarray  # (3, H, W) float32, the back-propagated signal at the input
    position: tuple[int, ...]  # (y, x) in the layer's map that was attributed; () if 2-D
    value: float  # the unit's activation there


class Attributor:
    """Attributes one unit of a layer to the input pixels, in one of `MODES`.

    Build once per model and call `attribute` per frame; `mode` may be changed between
    calls. The first call deep-copies the module (one model's worth of memory). Not
    thread-safe: use it from the thread that owns it (the inference worker).

    `fast` (default) tunes that copy as the renderer's is tuned: batch norms folded into
    their convolutions, channels-last on the CPU. Results are the same up to float rounding:
    a target conv whose batch norm was folded in is mapped back to its own output.
    """

    def __init__(self, model: LoadedModel | nn.Module,
                 mode: AttributionMode | str = AttributionMode.GRADIENT,
                 fast: bool = True) -> None:
        module = model.module if isinstance(model, LoadedModel) else model
        self._source = module
        self._model: nn.Module | None = None
        self._functional: dict[str, bool] = {}  # per target: F.relu & co. called below it
        self._rectifiers: list[RectifierWithRule] = []
        self._fast = fast
        self._unfold: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode = mode

    @property
    def mode(self) -> AttributionMode:
        return self._mode

    @mode.setter
    def mode(self, mode: AttributionMode | str) -> None:
        if mode not in MODES:
            raise AttributionError(f"unknown attribution mode {mode!r}: use {', '.join(MODES)}")
        self._mode = AttributionMode(mode)

    def _private_model(self, x: torch.Tensor) -> nn.Module:
        """The private copy, built on first use; its rectifiers follow the current mode.

        One copy serves all modes: in "gradient" mode the swapped rectifiers compute the
        true gradient, exactly as autograd's own ReLU/ReLU6 backward does.
        """
        if self._model is None:
            model = private_copy(self._source, x.device)
            swap_rectifiers(model, self._mode)
            self._rectifiers = [m for m in model.modules() if isinstance(m, RectifierWithRule)]
            if self._fast:
                # batch norms folded (their convs then output bn(z): `input_signal` maps a
                # folded conv target back to z) and channels-last on the CPU, both checked
                speed_up_copy(model, x.detach().clone(), lambda m, t: m(t), x.device,
                              folded=self._unfold)
            self._model = model
        for m in self._rectifiers:
            m.rule = self._mode
        return self._model

    def attribute(self, x: torch.Tensor, layer: str, unit: int,
                  position: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) float32 saliency of `unit` of `layer` for the (1, 3, H, W) normalized input.

        `position` is (y, x) in the layer's output map; None: the unit's spatial maximum.
        """
        return self.attribute_full(x, layer, unit, position).saliency

    def attribute_full(self, x: torch.Tensor, layer: str, unit: int,
                       position: tuple[int, int] | None = None) -> Attribution:
        """Saliency plus the signed input signal, the attributed position and its value."""
        signal, pos, value = self.input_signal(x, layer, unit, position)
        saliency = signal.abs().amax(0)
        out = torch.cat([saliency[None], signal]).float().cpu().numpy()  # one transfer
        return Attribution(out[0], out[1:], pos, value)

    def input_signal(self, x: torch.Tensor, layer: str, unit: int,
                     position: tuple[int, int] | None = None,
                     ) -> tuple[torch.Tensor, tuple[int, ...], float]:
        """(3, H, W) back-propagated signal on x's device, the position used and its value."""
        if x.dim() != 4 or x.shape[0] != 1:
            raise AttributionError(f"expected a (1, 3, H, W) input, got {tuple(x.shape)}")
        with torch.inference_mode(False), torch.enable_grad():
            model = self._private_model(x)
            inp = x.detach().clone().requires_grad_(True)
            # Functional F.relu calls need a function mode (all torch calls then go through
            # Python, ~15 % slower). The first pass to a target runs with it and counts them;
            # later passes use it only if there were any. In "gradient" mode autograd's own
            # backward of F.relu already is the gradient.
            functional = None
            if self._mode != "gradient" and self._functional.get(layer, True):
                functional = _FunctionalRectifiers(self._mode)
            try:
                out = forward_to(model, layer, inp, functional)
            except UnknownLayer:
                raise AttributionError(
                    f"no layer named {split_layer_name(layer)[0]!r} in the model") from None
            except LayerNotReached:
                raise AttributionError(
                    f"layer {layer!r} was not run by the forward pass") from None
            except NotATensor:
                raise AttributionError(f"layer {layer!r} has no (N, C[, H, W]) output") from None
            if functional is not None:
                self._functional[layer] = functional.calls > 0
            if not isinstance(out, torch.Tensor) or out.dim() not in (2, 4):
                raise AttributionError(f"layer {layer!r} has no (N, C[, H, W]) output")
            if not 0 <= unit < out.shape[1]:
                raise AttributionError(
                    f"unit {unit} out of range: {layer} has {out.shape[1]} units")
            fmap = out[0, unit]
            folded = self._unfold.get(model.get_submodule(split_layer_name(layer)[0]))
            if folded is not None:  # a conv whose batch norm was folded in: z = (out - b) / a
                fmap = (fmap - folded[1][unit]) / folded[0][unit]
            if out.dim() == 2:
                pos: tuple[int, ...] = ()
                objective = fmap
            else:
                h, w = fmap.shape
                if position is None:
                    flat = int(fmap.detach().flatten().argmax())
                    pos = (flat // w, flat % w)
                else:
                    pos = (int(position[0]), int(position[1]))
                    if not (0 <= pos[0] < h and 0 <= pos[1] < w):
                        raise AttributionError(
                            f"position {pos} outside the {h}×{w} map of {layer}")
                objective = fmap[pos]
            (grad,) = torch.autograd.grad(objective, inp, allow_unused=True)
        if grad is None:  # the unit does not depend on the input (e.g. a constant branch)
            grad = torch.zeros_like(inp)
        return grad[0].detach(), pos, float(objective.detach())


# -- display helpers -----------------------------------------------------------------------

def saliency_to_uint8(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """(H, W) float → (H, W) uint8, scaled so the `percentile`-th value is white.

    A percentile rather than the max: gradients have a few extreme pixels that would
    otherwise leave the rest of the map black.
    """
    s = np.asarray(saliency, dtype=np.float32)
    top = float(np.percentile(s, percentile)) if s.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros(s.shape, np.uint8)
    return np.clip(s * (255.0 / top), 0, 255).astype(np.uint8)


def signal_to_rgb(signal: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """(3, H, W) signed input signal → (H, W, 3) uint8: grey is zero, colour its sign.

    How the toolbox drew a deconvolution: the signal itself as an image, centred on mid
    grey and scaled so its `percentile`-th magnitude reaches black or white, which keeps
    the edges and colours the unit looked for visible instead of only their strength.
    """
    s = np.asarray(signal, dtype=np.float32)
    top = float(np.percentile(np.abs(s), percentile)) if s.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.full((*s.shape[1:], 3), 128, np.uint8)
    rgb = 128.0 + s.transpose(1, 2, 0) * (127.0 / top)
    return np.clip(rgb, 0, 255).astype(np.uint8)
