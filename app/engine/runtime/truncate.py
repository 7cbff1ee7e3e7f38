"""Forward passes that stop at one layer, on private copies of the live model.

Gradient ascent, attribution and receptive-field probes on a unit of a middle layer need
nothing above that layer; running it anyway costs (in EfficientNet-Lite0) as much again as
the layers below. `forward_to` keeps the target module's output in a forward hook and raises
a private exception to leave the forward at once, which works for any network, sequential or
not. `private_copy` gives the deep copy such work runs on: parameters frozen, the live
model's hooks not copied, so the live model, its recorder hooks and its `requires_grad` flags
are never touched. `TruncatedModel` puts the two together for repeated calls.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import weakref
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from app.engine.runtime.fold_bn import fold_batchnorms
from app.engine.runtime.inplace_clamp import clamp_in_place
from app.engine.runtime.layout import Layout, as_map, input_size, layout_of, split_part
from app.engine.runtime.recorder import split_layer_name

log = logging.getLogger(__name__)


class LayerNotReached(RuntimeError):
    """The forward pass ended without running the target layer (or not often enough)."""


class UnknownLayer(KeyError):
    """No module of that name in the model (a KeyError of our own, so that a KeyError
    raised by the model's own code is never mistaken for it)."""


class NotATensor(TypeError):
    """The target layer's output is not a tensor (a tuple, say)."""


class _Stop(Exception):  # a control-flow signal, not an error
    """Raised from the target's hook to end the forward pass early."""


_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
    "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
)


def private_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """Deep copy in eval mode on `device`, frozen, without the original's hooks.

    `copy.deepcopy` would copy hook dicts with their functions by reference: a recorder's hook
    left on the copy would write the copy's activations into the live recorder's dict, and a
    hook object holding a non-leaf tensor (lucent's) makes deepcopy fail outright. So each hook
    dict is pre-seeded in deepcopy's memo with an empty one; the original is never modified
    (the live worker may be running it at this very moment).
    """
    memo: dict[int, Any] = {}
    for m in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(m, attr, None)
            if isinstance(hooks, dict):
                memo[id(hooks)] = type(hooks)()
    clone = copy.deepcopy(model, memo)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval().to(device)


def forward_to(model: nn.Module, layer: str, x: torch.Tensor,
               mode: TorchFunctionMode | None = None) -> torch.Tensor:
    return _forward_to(model, layer, x, mode)[0]


def layer_layout(model: nn.Module, layer: str, x: torch.Tensor) -> Layout | None:
    """How `layer`'s module lays out its output for input `x` (None: no map, e.g. `fc`)."""
    with torch.no_grad():
        return _forward_to(model, layer, x, None)[1]


def _forward_to(model: nn.Module, layer: str, x: torch.Tensor,
                mode: TorchFunctionMode | None) -> tuple[torch.Tensor, Layout | None]:
    """`layer`'s output for `model(x)`; the forward ends there, nothing above it runs.

    `layer` is a dotted module name; `name:k` is its k-th call with a recordable output in
    the pass (0-based), exactly as the recorder names repeated calls; the output is the
    recorder's (N, C, H, W) map of it (a token layer's grid, `name:cls` its prefix tokens; a
    view, so gradients flow through it). A module with no such output (a classifier's
    `fc`) is addressed by its name alone: its first tensor output, found without stopping
    early. `mode`, if given, is active during the forward. Raises UnknownLayer,
    LayerNotReached, or NotATensor; errors of the model's own pass through.
    """
    name, wanted = split_layer_name(layer)
    part = split_part(layer)[1]
    try:
        target = model.get_submodule(name)
    except AttributeError:
        raise UnknownLayer(f"no layer named {name!r} in the model") from None
    input_hw = input_size(x)
    maps = 0  # recordable outputs seen: what `name:k` counts
    caught: list[tuple[torch.Tensor, Layout]] = []
    other: list[Any] = []  # the first other output, for modules that have no map

    def hook(m: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal maps
        layout = layout_of(output, m, input_hw)
        if layout is not None:  # counted as the recorder counts, whatever `part` is
            if maps == wanted and (layout.prefix or not part):
                caught.append((as_map(output, layout, part), layout))
                raise _Stop
            maps += 1
        elif not other:
            other.append(output)

    handle = target.register_forward_hook(hook)
    try:
        with mode if mode is not None else contextlib.nullcontext():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if caught:
        return caught[0]
    if wanted == 0 and other and not part:
        if not isinstance(other[0], torch.Tensor):
            raise NotATensor(f"layer {layer!r} does not output a tensor")
        return other[0], None
    raise LayerNotReached(f"layer {layer!r} did not run in the forward pass")


def speed_up_copy(model: nn.Module, example: torch.Tensor,
                  run: Callable[[nn.Module, torch.Tensor], torch.Tensor], device: torch.device,
                  keep: Collection[nn.Module] = (),
                  folded: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] | None = None,
                  ) -> tuple[int, bool]:
    """Tune a private copy for many forward+backward passes; → (batch norms folded,
    channels-last). Both are checked on `run(model, example)` and undone if it changes.

    Batch norms are folded into their convolutions (see `fold_batchnorms`, which fills
    `folded`); on the CPU the copy is laid out channels-last (oneDNN's fast path; a model
    that `.view`s its feature maps cannot take it). CUDA keeps its layout: not measured.
    """
    n = 0
    if any(type(m) is nn.BatchNorm2d for m in model.modules()):
        try:
            n = fold_batchnorms(model, example, run, keep=keep, folded=folded)
        except Exception:
            # only an optimization, and undone by itself when its check fails: run unfolded,
            # and let a real error, if any, surface from the real forward
            log.debug("batch norms not folded", exc_info=True)
    channels_last = False
    if device.type == "cpu":
        with torch.no_grad():
            try:
                before = run(model, example)
                model.to(memory_format=torch.channels_last)
                after = run(model, example)
                channels_last = after.shape == before.shape and torch.allclose(
                    after, before, rtol=1e-4, atol=1e-5 * float(before.abs().max()))
            except Exception:
                channels_last = False
        if not channels_last:
            model.to(memory_format=torch.contiguous_format)
    return n, channels_last


class TruncatedModel:
    """`tm(x)` returns the output of `layer` for input `x`; nothing above it runs.

    `layer` is a dotted name from `named_modules()` ("" = the whole model); a module run several
    times per pass is addressed as the recorder names it, `name:k` for its k-th call (0-based).

    `fast` (on a private copy only) tunes the copy for many forward+backward passes: batch
    norms folded into their convolutions, ReLUs clamping in place and, on the CPU,
    channels-last layout. Together they
    make a step of gradient ascent on EfficientNet-Lite0 about 1.7× faster on the CPU (either
    alone: about 1.1×); the target's output changes only by float rounding.
    """

    def __init__(self, model: nn.Module, layer: str, device: torch.device,
                 copy_model: bool = True, fast: bool = False) -> None:
        self.device = device
        self.model = private_copy(model, device) if copy_model else model
        self.layer = layer
        name, _call = split_layer_name(layer)
        try:
            self._target = self.model.get_submodule(name)
        except AttributeError:
            raise UnknownLayer(f"no layer named {name!r} in the model") from None
        self.channels_last = False
        self.folded = 0
        self.clamped = 0  # activations clamping in place (`inplace_clamp`)
        # applied on the first call, with that call's input as the fold's check: a render
        # served from the cache never pays for it
        self._speed_up_pending = fast and copy_model
        # set by `TruncatedCopies.take`: the model copied and its weights' stamp then
        self.source: weakref.ref[nn.Module] | None = None
        self.stamp: tuple[tuple[int, int], ...] = ()

    def _speed_up(self, example: torch.Tensor) -> None:
        def run(_m: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return self(x)

        self.folded, self.channels_last = speed_up_copy(
            self.model, example, run, self.device, keep=[self._target])
        # the target's own module stays: the forward stops at it, and a target that is
        # an activation must not clamp what the hook hands on
        self.clamped = clamp_in_place(self.model, example, run, keep=[self._target])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._speed_up_pending:
            self._speed_up_pending = False
            self._speed_up(x[:1].detach())
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.layer == "":
            return self.model(x)
        return forward_to(self.model, self.layer, x)


def _weights_stamp(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """Which tensors the model holds and how often each was changed in place (autograd's
    version counter): equal stamps mean a copy made earlier still has the same weights."""
    return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))


class TruncatedCopies:
    """Sped-up truncated copies kept between jobs: the next render of the same layer starts at
    once instead of copying, folding and checking the model again (a tenth of a 64-step
    render of EfficientNet-Lite0 on the CPU; seconds for a ViT).

    `take` hands a copy to one user at a time (a copy's hooks are not shared between
    threads), `give_back` returns it. A copy is reused only for the very model object it was
    made from with its weights unchanged; at most `keep` copies (the most recent) are held.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        # (id(model), layer, device) → (the model, its stamp then, the copy); insertion order
        # is recency
        self._free: dict[tuple[int, str, str], tuple[weakref.ref[nn.Module],
                                                      tuple[tuple[int, int], ...],
                                                      TruncatedModel]] = {}

    def take(self, model: nn.Module, layer: str, device: torch.device) -> TruncatedModel:
        """A fast truncated copy of `model` up to `layer` on `device`: a kept one, or new."""
        key = (id(model), layer, str(device))
        with self._lock:
            entry = self._free.pop(key, None)
        if entry is not None:
            source, stamp, truncated = entry
            if source() is model and stamp == _weights_stamp(model):
                return truncated
        truncated = TruncatedModel(model, layer, device, fast=True)
        truncated.source = weakref.ref(model)
        truncated.stamp = _weights_stamp(model)
        return truncated

    def give_back(self, truncated: TruncatedModel) -> None:
        """Keep `truncated` (from `take`) for the next `take` of its model and layer."""
        source = truncated.source
        model = source() if source is not None else None
        if source is None or model is None or self.keep <= 0:
            return
        key = (id(model), truncated.layer, str(truncated.device))
        with self._lock:
            self._free.pop(key, None)
            self._free[key] = (source, truncated.stamp, truncated)
            while len(self._free) > self.keep:
                self._free.pop(next(iter(self._free)))

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


# the process's kept copies (renders of a layer clicked again reuse them)
truncated_copies = TruncatedCopies()
