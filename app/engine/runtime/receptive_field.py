"""Receptive fields of any layer of any network, measured on the network itself.

The receptive field of an output position is the set of input pixels that can change it.
We measure it by running a *support-propagating* version of the real forward code: every
convolution and linear layer gets all-positive weights and no bias, normalizations,
activations, quantizers and dropout become the identity, squeeze-excitation gates are
dropped, and after every weighted layer or average pool the values are reset to 0 / 1
(non-zero → 1). Fed an input that is 1 on one row of pixels and 0 elsewhere, such a net is
non-zero exactly at the outputs that row can reach: nothing can cancel (all weights are
positive), max pooling is already exact (a max of non-negative numbers is non-zero iff one
of them is), and the 0/1 reset keeps float32 exact at any depth. By duality, row r lies in
the receptive field of output row y iff probing row r lights output row y. So
`input_size` row probes and as many column probes, batched, give every position's box:
`ReceptiveField.rows[y]` and `.cols[x]` hold half-open [start, stop) intervals in
model-input pixels, clipped to the image (conv/pool stacks have rectangular fields).

Because the real forward code runs, whatever padding a module computes at run time
(TensorFlow "SAME" in the bundled EfficientNet: asymmetric, input-size dependent), dilation
holes, ceil-mode pools, residual sums and concatenated branches are measured as they are.
Functional calls inside a `forward` (`F.relu`, `F.conv2d`) are caught by a
`TorchFunctionMode`, not only modules. For speed, each weighted layer also averages its
input channels into one (all channels of such a net carry the same support); nets that
reshape channels (channel shuffle) are re-run at full width.

Constants never widen a field: adding, scaling or subtracting a scalar or a per-channel
tensor (bias, input normalization, layer scale, a squeeze-excitation gate) keeps the
support of the map operand, and a difference of two maps counts as their sum.

A torch.export program runs aten operators instead of `F.*` functions; those with the
same arguments are mapped to the functions above (`_ATEN`), so programs measure the same.

Tokens (a transformer's patch grid, or a channels-last map the support probe cannot run)
are not measured box by box: attention mixes every token with every other, so a token's
field is either its own patch (the patch embedding, and anything before the first attention)
or the whole image. Which one is measured on a private copy of the real network: a change
of one pixel in the middle reaches the token holding it and no other, or more of them. The
result's `note` says which (the class and register tokens: the whole image).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from app.engine.runtime.directions import split_direction_layer
from app.engine.runtime.layout import MAP, NHWC, split_part
from app.engine.runtime.truncate import (
    LayerNotReached,
    NotATensor,
    forward_to,
    layer_layout,
    private_copy,
)

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open: rows y0..y1-1, cols x0..x1-1


@dataclass(frozen=True, eq=False)
class ReceptiveField:
    """Boxes of every position of one layer for a square `input_size` input.

    `rows` is (H, 2) and `cols` is (W, 2) int64: half-open input intervals of output row y
    and output column x, clipped to the input. `size` and `stride` are (y, x) pairs: the
    largest extent seen and the step between neighbouring positions' centres.
    """

    layer: str
    input_size: int
    rows: np.ndarray
    cols: np.ndarray
    # input pixels per output position, (y, x), measured from how the map grows with the
    # input: the stride when every box of an axis is clipped by the border (deep layers)
    grid_step: tuple[float, float] | None = None
    # how the field was found, in words: "" for a measured conv field; for tokens whether
    # each has its own patch or the whole image
    note: str = ""

    @property
    def map_shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    @property
    def size(self) -> tuple[int, int]:
        return (int((self.rows[:, 1] - self.rows[:, 0]).max()),
                int((self.cols[:, 1] - self.cols[:, 0]).max()))

    @property
    def stride(self) -> tuple[float, float]:
        measured = _step(self.rows, self.input_size), _step(self.cols, self.input_size)
        if self.grid_step is None:
            return measured[0] or self.input_size / len(self.rows), \
                measured[1] or self.input_size / len(self.cols)
        return measured[0] or self.grid_step[0], measured[1] or self.grid_step[1]

    def box(self, y: int, x: int) -> Box:
        """(y0, x0, y1, x1) of position (y, x), half-open, in model-input pixels."""
        r, c = self.rows[y], self.cols[x]
        return int(r[0]), int(c[0]), int(r[1]), int(c[1])

    def boxes(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Vectorized `box`: integer arrays of any shape → (..., 4) int64 boxes."""
        r, c = self.rows[y], self.cols[x]
        return np.stack([r[..., 0], c[..., 0], r[..., 1], c[..., 1]], axis=-1)


def _step(intervals: np.ndarray, size: int) -> float:
    """Most common step between neighbours' unclipped starts (or ends); 0.0 when every
    start and end is clipped by the border, so the intervals cannot tell."""
    starts, ends = intervals[:, 0], intervals[:, 1]
    steps = [b - a for a, b in itertools.pairwise(starts) if a > 0]
    steps += [b - a for a, b in itertools.pairwise(ends) if b < size]
    if not steps:
        return 0.0
    values, counts = np.unique(np.asarray(steps), return_counts=True)
    return float(values[np.argmax(counts)])


# -- linearization ---------------------------------------------------------------------------

_IDENTITY_FUNCS = {
    F.relu, F.relu_, F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu, F.leaky_relu_, F.elu,
    F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh,
    F.softplus, F.prelu, F.dropout, F.dropout2d, F.batch_norm, F.layer_norm, F.group_norm,
    F.instance_norm, F.local_response_norm, torch.relu, torch.relu_, torch.sigmoid,
    torch.tanh, torch.batch_norm, torch.layer_norm, torch.group_norm,
    # quantizers would round 0/1 probe values away; what they quantize depends on the input
    torch.round, torch.floor, torch.ceil, torch.trunc, torch.Tensor.round, torch.Tensor.floor,
    torch.Tensor.ceil, torch.Tensor.trunc, torch.Tensor.relu, torch.Tensor.sigmoid,
}
_AVG_POOLS = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
              F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.interpolate}
_CONVS = {F.conv1d, F.conv2d, F.conv3d}
T = torch.Tensor
_ADDS = {torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__}
_SUBS = {torch.sub, T.sub, T.sub_, T.__sub__, T.__isub__}
_SCALES = {torch.mul, T.mul, T.mul_, T.__mul__, T.__rmul__, T.__imul__, torch.div, T.div,
           T.div_, T.__truediv__, T.__itruediv__, T.__rsub__, torch.rsub}
_IN_PLACE_SUB = {T.sub_: T.add_, T.__isub__: T.__iadd__}


def _aten_equivalents() -> dict[Any, Any]:
    """A torch.export program's graph calls aten overloads, not F.*: each one that takes
    the same leading arguments as a function above, mapped to it."""
    aten = torch.ops.aten
    same: dict[Any, Any] = {
        aten.conv1d.default: F.conv1d, aten.conv2d.default: F.conv2d,
        aten.conv3d.default: F.conv3d, aten.linear.default: F.linear,
        aten.avg_pool2d.default: F.avg_pool2d,
        aten.adaptive_avg_pool2d.default: F.adaptive_avg_pool2d,
        aten.add.Tensor: torch.add, aten.add_.Tensor: T.add_, aten.sub.Tensor: torch.sub,
        aten.sub_.Tensor: T.sub_, aten.mul.Tensor: torch.mul, aten.mul_.Tensor: T.mul_,
        aten.div.Tensor: torch.div, aten.div_.Tensor: T.div_,
    }
    for name in ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "elu",
                 "gelu", "silu", "silu_", "mish", "hardswish", "hardswish_", "hardsigmoid",
                 "sigmoid", "tanh", "dropout", "batch_norm", "layer_norm", "group_norm",
                 "instance_norm", "round"):
        op = getattr(aten, name, None)
        if op is not None:
            same[op.default] = torch.relu  # any member of _IDENTITY_FUNCS: returns its input
    return same


_ATEN = _aten_equivalents()


def _averaging(weight: torch.Tensor) -> torch.Tensor:
    """Same shape, every weight 1 / fan-in: positive, and activations stay near 1; a
    convolution's taps that are zero in every filter stay zero (`_taps`)."""
    ones = torch.full(weight.shape, 1.0 / max(weight[0].numel(), 1), device=weight.device)
    return ones * _taps(weight) if weight.dim() > 2 else ones


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """(k, k…) 1 where some filter has a non-zero weight, else 0. A tap that is zero in
    every filter connects nothing: Conv2dSame's kernel widened by a zero row for an
    asymmetric SAME pad, or a pruned tap."""
    return (weight.detach() != 0).flatten(0, 1).any(0).float()


class _Support(TorchFunctionMode):
    """Runs a network as a support-propagating one: see the module docstring.

    With `collapse`, every convolution and linear layer also averages its input channels
    into one output channel, so a probe costs a few hundredths of the real forward.
    """

    def __init__(self, collapse: bool) -> None:
        super().__init__()
        self.collapse = collapse

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = dict(kwargs or {})
        func = _ATEN.get(func, func)
        if func in _IDENTITY_FUNCS:
            return args[0] if args else kwargs.get("input")
        if func in _CONVS or func is F.linear:
            return _binary(self._weighted(func, list(args), kwargs))
        if func in _AVG_POOLS:
            return _binary(func(*args, **kwargs))
        if (func in _ADDS or func in _SUBS or func in _SCALES) and len(args) >= 2:
            return _arithmetic(func, args[0], args[1], kwargs)
        return func(*args, **kwargs)

    def _weighted(self, func: Any, args: list[Any], kwargs: dict[str, Any]) -> torch.Tensor:
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        call = dict(zip(names, args, strict=False)) | kwargs
        x, weight = call.pop("input"), call.pop("weight")
        call.pop("bias", None)
        if func is F.linear:
            if self.collapse:
                return x.amax(-1, keepdim=True)
            return func(x, _averaging(weight).to(x.dtype))
        if self.collapse:
            x = x.amax(1, keepdim=True)
            w = _taps(weight).to(x.device, x.dtype)[None, None]
            call["groups"] = 1
            return func(x, w, None, **call)
        return func(x, _averaging(weight).to(x.dtype), None, **call)


def _spatial(t: Any) -> bool:
    """True for a map that varies over the image, False for scalars and per-channel
    constants (a bias, a normalizing mean, a layer scale, a squeeze-excitation gate)."""
    return isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] * t.shape[-2] > 1


def _arithmetic(func: Any, a: Any, b: Any, kwargs: dict[str, Any]) -> Any:
    """Constants are dropped (x + c, x * c: support of x); x − y adds (nothing cancels)."""
    if not (_spatial(a) and _spatial(b)):
        return a if _spatial(a) or not isinstance(b, torch.Tensor) else b
    if func in _SUBS:
        func = _IN_PLACE_SUB.get(func, torch.add)
        kwargs.pop("alpha", None)
    if func in (torch.div, T.div, T.div_, T.__truediv__, T.__itruediv__):
        return a  # a / b: the support of a (b is no zero divisor in a real net)
    return func(a, b, **kwargs)


def _binary(t: Any) -> Any:
    return (t > 0).to(t.dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def _squeeze_excitation_types() -> tuple[type, ...]:
    try:
        from torchvision.ops import SqueezeExcitation
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return ()
    return (SqueezeExcitation,)


def linearized_copy(model: nn.Module) -> nn.Module:
    """A CPU float32 copy of `model` with no hooks and no squeeze-excitation gates."""
    clone = copy.deepcopy(model).cpu().float().eval()
    se = _squeeze_excitation_types()
    for module in list(clone.modules()):
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
        module._backward_hooks.clear()
        for child_name, child in list(module.named_children()):
            if (se and isinstance(child, se)) or "SqueezeExcit" in type(child).__name__:
                setattr(module, child_name, nn.Identity())
    return clone


def measure_receptive_field(model: nn.Module, layer: str, input_size: int,
                            lin: nn.Module | None = None) -> ReceptiveField:
    """Measure row and column intervals of `layer` for a size×size input (uncached).

    `lin` is `linearized_copy(model)` when the caller keeps one.
    """
    lin = lin if lin is not None else linearized_copy(model)
    try:
        return _measure(lin, layer, input_size, _Support(collapse=True))
    except (RuntimeError, ValueError, IndexError):
        # a net that reshapes its channels: pay for the full-width probe
        return _measure(lin, layer, input_size, _Support(collapse=False))


def _measure(lin: nn.Module, layer: str, size: int, mode: _Support | None) -> ReceptiveField:
    def forward(x: torch.Tensor) -> torch.Tensor:
        try:
            out = forward_to(lin, layer, x, mode)
        except (LayerNotReached, NotATensor):
            out = None
        if out is None or out.dim() != 4:
            raise ValueError(f"layer {layer!r} produced no (N, C, H, W) output")
        return out

    with torch.no_grad():
        h, w = forward(torch.ones(1, 3, size, size)).shape[-2:]
    full_width = mode is None or not mode.collapse
    rows = cols = None
    # Rows do not depend on the width (padding is per axis), so probe them on a narrow
    # strip first: 7× cheaper at 224. Any doubt (an error, another height) → full width.
    for narrow in dict.fromkeys((min(size, _NARROW), size)):
        try:
            rows = _reach(forward, size, narrow, "row", h, full_width)
            cols = _reach(forward, size, narrow, "col", w, full_width)
            break
        except (RuntimeError, ValueError, IndexError):
            if narrow == size:
                raise
    assert rows is not None and cols is not None
    rf = ReceptiveField(layer, size, rows, cols)
    if not (_step(rows, size) and _step(cols, size)):
        with torch.no_grad():
            rf = dataclasses.replace(rf, grid_step=_grid_step(forward, size, (h, w)))
    return rf


def _grid_step(forward: Any, size: int, shape: tuple[int, int]) -> tuple[float, float] | None:
    """(y, x) input pixels per output position: how far the input must grow, past the
    first size at which the map grows, for it to grow again. None if it never does (an
    adaptive pool) within 4× the input."""

    def map_shape(s: int) -> tuple[int, int]:
        out = forward(torch.zeros(1, 3, s, s)).shape[-2:]
        return int(out[0]), int(out[1])

    def first_growth(start: int, base: tuple[int, int], axis: int) -> int | None:
        """Smallest s > start at which the map is longer than `base` along `axis`."""
        lo, hi = start, start + 1
        while map_shape(hi)[axis] <= base[axis]:  # gallop out, then bisect back
            lo, hi = hi, start + 2 * (hi - start)
            if hi > 4 * size:
                return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if map_shape(mid)[axis] <= base[axis] else (lo, mid)
        return hi

    steps = []
    for axis in (0, 1):
        s1 = first_growth(size, shape, axis)
        s2 = None if s1 is None else first_growth(s1, map_shape(s1), axis)
        if s1 is None or s2 is None:
            return None
        steps.append((s2 - s1) / (map_shape(s2)[axis] - map_shape(s1)[axis]))
    return steps[0], steps[1]


_NARROW = 32


def _reach(forward: Any, size: int, narrow: int, axis: str, n_out: int,
           full_width: bool) -> np.ndarray:
    """(n_out, 2) input intervals along `axis`, from one probe per input row (or column)."""
    shape = (size, narrow) if axis == "row" else (narrow, size)
    chunk = max(1, int((4 if full_width else 64) * 224 * 224 / (size * narrow)))
    lit = []
    with torch.no_grad():
        for start in range(0, size, chunk):
            idx = torch.arange(start, min(start + chunk, size))
            x = torch.zeros(len(idx), 3, *shape)
            if axis == "row":
                x[torch.arange(len(idx)), :, idx, :] = 1.0
            else:
                x[torch.arange(len(idx)), :, :, idx] = 1.0
            out = forward(x) > 0  # (n, C, H, W)
            hit = out.any(1).any(2) if axis == "row" else out.any(1).any(1)
            if hit.shape[1] != n_out:
                raise ValueError("the strip changed the map size")
            lit.append(hit.numpy())
    return _intervals(np.concatenate(lit), size)


def _intervals(lit: np.ndarray, size: int) -> np.ndarray:
    """(inputs, outputs) reach matrix → (outputs, 2) [first, last + 1) input of each output."""
    any_hit = lit.any(0)
    first = np.where(any_hit, lit.argmax(0), 0)
    last = np.where(any_hit, size - lit[::-1].argmax(0), size)
    return np.stack([first, last], axis=1).astype(np.int64)


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def receptive_field(model: nn.Module, layer: str, input_size: int) -> ReceptiveField:
    """The receptive field of every position of `layer` for a square input.

    Cached per (model, layer, input size); thread-safe, and never touches `model` itself
    (it works on a copy, so a live worker can keep using the model meanwhile). A direction
    layer's code at a position reads only its source's activation there: the source's field.
    """
    layer = split_direction_layer(layer)[0]
    key = (layer, int(input_size))
    with _LOCK:
        entry = _CACHE.setdefault(model, {})
        hit = entry.get(key)
        if hit is not None:
            return hit
        lin = _linearized(entry, model)
        try:  # the copy keeps the modules and shapes: it tells the layout as well
            layout = layer_layout(lin, layer, torch.zeros(1, 3, int(input_size), int(input_size)))
        except (LayerNotReached, NotATensor):
            layout = None  # measured below, which says what is wrong with the layer
        if layout is not None and layout.kind != MAP:
            rf = None
            if layout.kind == NHWC and not split_part(layer)[1]:
                # a channels-last conv net (ConvNeXt's MLPs) still has a measurable field
                try:
                    rf = measure_receptive_field(model, layer, int(input_size), lin)
                except Exception:
                    rf = None  # attention (Swin): the token rule below
            if rf is None:
                if "real" not in entry:
                    # the token rule runs the real network, never `model` itself: a live
                    # recorder's hooks on it would record this pass
                    entry["real"] = private_copy(model, torch.device("cpu"))
                rf = token_field(entry["real"], layer, int(input_size))
        else:
            rf = measure_receptive_field(model, layer, int(input_size), lin)
        entry[key] = rf
        return rf


def _linearized(entry: dict[Any, Any], model: nn.Module) -> nn.Module:
    if "copy" not in entry:
        entry["copy"] = linearized_copy(model)
    return entry["copy"]


def token_field(model: nn.Module, layer: str, size: int) -> ReceptiveField:
    """Each token's own patch, or the whole image for all: whichever a one-pixel change in
    the middle of a size×size input shows (`model`: a copy nobody else runs)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g)
    with torch.no_grad():
        base = forward_to(model, layer, x)
        h, w = base.shape[-2:]
        y, xx = size // 2, size // 2
        bumped = x.clone()
        bumped[..., y, xx] += 1.0
        changed = (forward_to(model, layer, bumped) - base).abs().amax(1)[0] > 0
    own = (y * h // size, xx * w // size)
    lit = int(changed.sum())
    if split_part(layer)[1] or lit != 1 or not bool(changed[own]):
        whole = np.tile(np.array([[0, size]], dtype=np.int64), (1, 1))
        return ReceptiveField(layer, size, np.repeat(whole, h, 0), np.repeat(whole, w, 0),
                              note="whole image: attention mixes every token")
    rows = np.array([[i * size // h, (i + 1) * size // h] for i in range(h)], dtype=np.int64)
    cols = np.array([[j * size // w, (j + 1) * size // w] for j in range(w)], dtype=np.int64)
    ph, pw = size // h, size // w
    return ReceptiveField(layer, size, rows, cols,
                          note=f"its own {ph}×{pw} patch (before any attention)")
