"""Deleting units: forward hooks that replace chosen channels of a layer's output.

`Ablation` is the live tool: enter it once, change the deleted units at any time with
`set`/`clear`, and every forward of the model sees the ablated layers. Zero ablation sets the
channels to 0; mean ablation sets them to the unit's mean activation, taken from
`RunningChannelMeans` (Morcos et al. 2018 compare both). A new tensor is returned from the
hook, so nothing that already holds the intact output is overwritten, and removing the hooks
gives exactly the intact network back.

A direction layer (`L@nmf32`: a concept dictionary, later CAVs) is deleted on its source:
deleting its units subtracts their components from the source's activation and leaves the
rest, residual included (`runtime.directions.DirectionLayer.delete`); in mean mode each
deleted unit's code is replaced by its mean code instead (the component of the difference
is subtracted). The hook sits on the source module, like a unit deletion there; both apply
when both are asked, the source's units first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from app.core.messages import AblationMode
from app.core.units import UnitSpecError, parse_units
from app.engine.runtime.directions import DirectionLayer, split_direction_layer
from app.engine.runtime.layout import CLS, Layout, as_map, from_map, input_size, layout_of
from app.engine.runtime.recorder import split_layer_name


class AblationError(ValueError):
    """A layer or unit that cannot be ablated; the message is one line for the user."""


def parse_ablation(spec: str) -> tuple[str, str]:
    """`LAYER:UNITS` → (layer, units spec). The last colon splits, so `relu:1:0-3` works."""
    layer, sep, units = spec.strip().rpartition(":")
    if not sep or not layer or not units.strip():
        raise AblationError(f"bad ablation {spec!r}: use LAYER:UNITS, e.g. _blocks.8:0-15")
    return layer, units.strip()


def parse_ablations(specs: Iterable[str], channels: Mapping[str, int]) -> dict[str, list[int]]:
    """Repeated `LAYER:UNITS` → {layer: sorted units}, checked against `channels` per layer."""
    out: dict[str, set[int]] = {}
    for spec in specs:
        layer, units = parse_ablation(spec)
        if layer not in channels:
            raise AblationError(f"no recordable layer {layer!r} (see `deepvis layers`)")
        try:
            out.setdefault(layer, set()).update(parse_units(units, channels[layer]))
        except UnitSpecError as exc:
            raise AblationError(f"{layer}: {exc}") from None
    return {layer: sorted(u) for layer, u in out.items()}


class RunningChannelMeans:
    """Per-layer, per-channel mean of the spatial-mean activation over all frames seen.

    `momentum=None` is the plain cumulative mean; a float makes it an exponential moving
    average (new = (1 - m) · old + m · frame), which follows a live scene as it changes.
    Means stay on the activations' device; `update` costs one reduction over the map.
    """

    def __init__(self, momentum: float | None = None) -> None:
        if momentum is not None and not 0.0 < momentum <= 1.0:
            raise ValueError("momentum must be in (0, 1]")
        self.momentum = momentum
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def update(self, layer: str, activation: torch.Tensor) -> None:
        """Fold a (N, C, H, W) or (N, C) activation into `layer`'s means."""
        a = activation.detach()
        per_item = a.float().flatten(2).mean(2) if a.dim() > 2 else a.float()
        n = per_item.shape[0]
        if self.momentum is None or layer not in self._sums:
            self._sums[layer] = self._sums.get(layer, 0) + per_item.sum(0)
            self._counts[layer] = self._counts.get(layer, 0) + n
        else:
            m = self.momentum
            mean = self._sums[layer] / self._counts[layer]
            for row in per_item:  # one frame at a time, as they arrive
                mean = (1.0 - m) * mean + m * row
            self._sums[layer], self._counts[layer] = mean, 1

    def count(self, layer: str) -> int:
        """Items folded into `layer` (1 after the first with a momentum)."""
        return self._counts.get(layer, 0)

    def mean(self, layer: str) -> torch.Tensor | None:
        """(C,) float32 means of `layer`, None before its first update."""
        if layer not in self._sums:
            return None
        return self._sums[layer] / self._counts[layer]

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """The state, for `restore` (a pass that failed half-way must not count twice)."""
        return dict(self._sums), dict(self._counts)

    def restore(self, state: tuple[dict[str, torch.Tensor], dict[str, int]]) -> None:
        # updates replace the tensors instead of changing them in place: a shallow copy is
        # a snapshot
        self._sums, self._counts = dict(state[0]), dict(state[1])

    def reset(self, layer: str | None = None) -> None:
        for d in (self._sums, self._counts):
            if layer is None:
                d.clear()
            else:
                d.pop(layer, None)


def fork_safe(model: nn.Module) -> bool:
    """Whether a forked pass is exact for `model`: no layer may mix the samples of a batch
    (the intact and ablated rows would see each other), as batch norm does in training mode
    or without running statistics."""
    return not model.training and not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        and (m.training or not m.track_running_stats)
        for m in model.modules()
    )


class ForkError(RuntimeError):
    """A forked pass met an ablated layer outside the doubled batch (a parallel branch)."""


class Ablation(AbstractContextManager["Ablation"]):
    """Replaces channels of layers' outputs during every forward of `model` while entered.

    `units` maps dotted layer names (`name:k` for the k-th call of a reused module, as the
    recorder names them) to channel indices. `mode="mean"` fills with `means`: either a
    RunningChannelMeans, which the hook keeps updating from the *intact* outputs (so the
    statistics are never polluted by the ablation itself), or fixed (C,) tensors per layer.

    The hooks run before any other forward hook on the layer, so an ActivationRecorder sees
    (and the live grid shows) the ablated output: what the rest of the network receives.

    `forked()` gives the intact and the ablated network in one pass: the first layer with
    deleted units doubles the batch, [intact; ablated], and everything above runs once on
    both. Batch 2 costs the CPU ~1.1 passes where a second pass costs 2.
    """

    def __init__(
        self,
        model: nn.Module,
        units: Mapping[str, Iterable[int]] | None = None,
        mode: AblationMode | str = AblationMode.ZERO,
        means: RunningChannelMeans | Mapping[str, torch.Tensor] | None = None,
        directions: Mapping[str, DirectionLayer] | None = None,
    ) -> None:
        if mode not in tuple(AblationMode):
            raise AblationError(f"unknown ablation mode {mode!r}: use zero or mean")
        mode = AblationMode(mode)
        if mode == AblationMode.MEAN and means is None:
            means = RunningChannelMeans()
        self.model = model
        self.mode = mode
        self.means = means
        self._units: dict[str, tuple[int, ...]] = {}
        self._masks: dict[tuple[str, torch.device, int], torch.Tensor] = {}
        self._handles: dict[str, list[torch.utils.hooks.RemovableHandle]] = {}
        self._calls: dict[str, int] = {}
        self._root_handle: torch.utils.hooks.RemovableHandle | None = None
        self._entered = False
        self.enabled = True  # False: hooks pass outputs through (see `paused`)
        self._forking = False
        self._fork_n: int | None = None  # this pass's batch size before it was doubled
        self._input_hw: tuple[int, int] | None = None  # this pass's input (H, W)
        self.directions: dict[str, DirectionLayer] = {}
        self._by_source: dict[str, list[str]] = {}
        for d in (directions or {}).values():
            self.add_direction_layer(d)
        for layer, u in (units or {}).items():
            self._units[layer] = tuple(sorted(set(int(i) for i in u)))
            self._module(layer)  # unknown names fail here, not on the first frame

    def add_direction_layer(self, directions: DirectionLayer) -> None:
        """Make the direction layer `directions.set.name` deletable (`set` it after)."""
        name = directions.set.name
        self.directions[name] = directions
        self._by_source.setdefault(directions.set.source, [])
        if name not in self._by_source[directions.set.source]:
            self._by_source[directions.set.source].append(name)

    # -- which units --------------------------------------------------------------------
    @property
    def units(self) -> dict[str, tuple[int, ...]]:
        """The deleted units per layer (a copy)."""
        return {k: v for k, v in self._units.items() if v}

    def set(self, layer: str, units: Iterable[int]) -> None:
        """Delete exactly `units` of `layer` (an empty set restores the layer)."""
        self._module(layer)
        self._units[layer] = tuple(sorted(set(int(i) for i in units)))
        self._masks = {k: v for k, v in self._masks.items() if k[0] != layer}
        if self._entered:
            self._hook(layer)

    def watch(self, layer: str) -> None:
        """Hook `layer` without deleting anything, so mean mode gathers its running means
        from intact outputs before its first unit is deleted (call for the selected layer)."""
        if layer not in self._units:
            self.set(layer, ())

    def add(self, layer: str, unit: int) -> None:
        self.set(layer, (*self._units.get(layer, ()), unit))

    def remove(self, layer: str, unit: int) -> None:
        self.set(layer, (u for u in self._units.get(layer, ()) if u != unit))

    def clear(self, layer: str | None = None) -> None:
        """Restore one layer, or every layer (watched layers stay watched)."""
        for name in [layer] if layer is not None else list(self._units):
            if name in self._units:
                self.set(name, ())

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Run the intact network for a moment (the worker's intact top-5) without
        taking the hooks off; running means are not updated meanwhile."""
        was, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = was

    @contextmanager
    def forked(self) -> Iterator[None]:
        """Passes inside return (2N, ...) for an (N, ...) input once an ablated layer ran:
        rows [:N] the intact network's, [N:] the ablated one's. Rows stay (N, ...) if no unit
        was deleted on the way (the intact and ablated outputs are the same then). Raises
        ForkError (or the model's own shape error) where a branch that never saw the
        doubled batch is ablated or merged with it: run two passes for such a model."""
        was, self._forking = self._forking, True
        try:
            yield
        finally:
            self._forking = was

    # -- hooks --------------------------------------------------------------------------
    def __enter__(self) -> Ablation:
        try:
            # forward hooks cannot see which pass they are in; a pre-hook on the root
            # resets the per-pass call counts that `name:k` needs
            self._root_handle = self.model.register_forward_pre_hook(self._new_pass)
            self._entered = True
            for layer in self._units:
                self._hook(layer)
        except BaseException:
            self.remove_hooks()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_hooks()

    def remove_hooks(self) -> None:
        """Take every hook off: the model is the intact one again."""
        for handles in self._handles.values():
            for h in handles:
                h.remove()
        self._handles.clear()
        if self._root_handle is not None:
            self._root_handle.remove()
            self._root_handle = None
        self._entered = False

    def _module(self, layer: str) -> nn.Module:
        source, tag = split_direction_layer(layer)
        if tag and layer not in self.directions:
            raise AblationError(f"no direction set given for {layer!r}")
        name, _ = split_layer_name(source)
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            raise AblationError(f"no layer named {name!r} in the model") from None

    def _new_pass(self, _module: nn.Module, inputs: Any) -> None:
        self._calls.clear()
        self._fork_n = None
        self._input_hw = input_size(inputs[0]) if inputs else None

    def _hook(self, layer: str) -> None:
        name, _ = split_layer_name(split_direction_layer(layer)[0])
        if name in self._handles:
            return  # one hook per module serves all its calls
        module = self._module(layer)
        self._handles[name] = [module.register_forward_hook(self._hook_for(name), prepend=True)]

    def _hook_for(self, name: str) -> Any:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> Any:
            # only recordable outputs are counted and touched, as the recorder names them
            # (`act:1` is the second feature map through `act`, whatever vectors it saw
            # between); a token or channels-last output is edited through its map view
            if not self.enabled:
                return None
            layout = layout_of(output, module, self._input_hw)
            if layout is None:
                return None
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = name if call == 0 else f"{name}:{call}"
            parts = [(k, p) for src, p in ((key, ""), (f"{key}:{CLS}", CLS))
                     if layout.prefix or not p
                     for k in (src, *self._by_source.get(src, ())) if k in self._units]
            if not parts:
                return None
            n = self._fork_n
            doubled = n is not None and output.shape[0] == 2 * n
            if self.mode == AblationMode.MEAN and isinstance(self.means, RunningChannelMeans):
                # before ablation, from the intact rows only: intact statistics
                intact = output[:n] if doubled else output
                for k, p in parts:
                    m = as_map(intact, layout, p)
                    self.means.update(k, self.directions[k].codes(m) if k in self.directions
                                      else m)
            parts = [(k, p) for k, p in parts if self._units[k]]
            if not parts:
                return None
            if not self._forking:
                return self._edit(output, layout, parts)
            if n is None:  # the first deletion of this pass: fork here
                self._fork_n = output.shape[0]
                return torch.cat([output, self._edit(output, layout, parts)])
            if not doubled:
                raise ForkError(f"{key} runs on a branch the forked batch does not reach")
            return torch.cat([output[:n], self._edit(output[n:], layout, parts)])

        return hook

    def _edit(self, output: torch.Tensor, layout: Layout,
              parts: list[tuple[str, str]]) -> torch.Tensor:
        """`output` in its own layout with the deleted units of each (layer, part) replaced."""
        for layer, part in parts:
            output = from_map(output, layout, self.apply(layer, as_map(output, layout, part)),
                              part)
        return output

    def apply(self, layer: str, output: torch.Tensor) -> torch.Tensor:
        """`output` (N, C, ...) of `layer` with its deleted channels replaced (a new tensor);
        for a direction layer, `output` is its source's and loses the units' components."""
        units = self._units.get(layer, ())
        if layer in self.directions:
            return self._apply_direction(self.directions[layer], layer, units, output)
        if units and units[-1] >= output.shape[1]:
            raise AblationError(f"unit {units[-1]} out of range: {layer} has "
                                f"{output.shape[1]} units")
        if self.mode == AblationMode.ZERO:
            fill = output.new_zeros(())
        else:
            means = self.means
            mean = means.mean(layer) if isinstance(means, RunningChannelMeans) else (
                means.get(layer) if means is not None else None)
            if mean is None:
                raise AblationError(f"no mean activations for {layer!r} to ablate with")
            if mean.numel() != output.shape[1]:
                raise AblationError(f"{layer}: {mean.numel()} means for {output.shape[1]} units")
            fill = mean.to(output.device, output.dtype).view(1, -1, *([1] * (output.dim() - 2)))
        return torch.where(self._mask(layer, output), fill, output)

    def _apply_direction(self, d: DirectionLayer, layer: str, units: tuple[int, ...],
                         output: torch.Tensor) -> torch.Tensor:
        try:
            d.check_units(units)
        except ValueError as exc:
            raise AblationError(str(exc)) from None
        if self.mode == AblationMode.ZERO:
            return d.delete(output, units)
        means = self.means
        mean = means.mean(layer) if isinstance(means, RunningChannelMeans) else (
            means.get(layer) if means is not None else None)
        if mean is None or mean.numel() != d.k:
            raise AblationError(f"no mean codes for {layer!r} to ablate with")
        codes = d.codes(output)
        shift = codes - mean.to(codes.device, codes.dtype).view(1, -1, 1, 1)
        return output - d.component(shift, units)

    def _mask(self, layer: str, output: torch.Tensor) -> torch.Tensor:
        key = (layer, output.device, output.shape[1])
        mask = self._masks.get(key)
        if mask is None:
            channels = output.shape[1]
            m = torch.zeros(channels, dtype=torch.bool)
            m[[u for u in self._units.get(layer, ()) if u < channels]] = True
            mask = m.view(1, -1, *([1] * (output.dim() - 2))).to(output.device)
            self._masks[key] = mask
        return mask
