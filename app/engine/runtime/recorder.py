"""Forward hooks that record every layer producing a feature map, without copying.

Outputs are kept by reference: copying every layer each frame would cost as much memory
traffic as the forward pass itself. A reference is only wrong when something later
writes into that tensor in place (an in-place ReLU, ResNet's `out += identity`). Such
writes bump the tensor's version counter, so after a pass we know exactly which layers
were overwritten; those layers are cloned from then on, and the pass that found them
is run once more so no frame ever shows overwritten values.

The network's output is a layer too, `logits`: a classifier's (N, classes) scores kept as
(N, classes, 1, 1), one 1×1 "map" per class, so every view and analysis that works on a
unit works on a class unit unchanged (Building Blocks' class units; a rendered class unit
is a class visualization). Its module is the model itself, named "" by `named_modules()`.

Direction layers (`SOURCE@TAG`, `runtime.directions`: concept dictionaries, CAVs) are
recorded by the hook on their source: given their `DirectionLayer`s, the recorder computes
the codes right when the source is recorded (before a later layer could overwrite it in
place), so every view that records layers — scans, dissection, the live grid — takes them
with no code of its own, and `truncated_forward` stops right after the source.

Transformer outputs are recorded as maps too (see `layout`): tokens (N, T, C) as the (N, C,
h, w) grid of patch tokens, with the class/register tokens as the layer `NAME:cls` (N, C,
1, P); channels-last (N, H, W, C) permuted to (N, C, H, W). Both are views, not copies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from app.core.messages import LOGITS, LayerInfo
from app.engine.runtime.directions import (
    DIRECTION_KIND,
    DirectionLayer,
    DirectionSet,
    is_direction_layer,
    split_direction_layer,
)
from app.engine.runtime.layout import (
    CLS,
    MAP,
    TOKENS,
    Layout,
    as_map,
    input_size,
    layout_of,
    split_part,
)


def repeat_name(name: str, call: int) -> str:
    """Name of the `call`-th output (0-based) of a module run several times in one pass."""
    return name if call == 0 else f"{name}:{call}"


def split_layer_name(layer: str) -> tuple[str, int]:
    """The inverse of `repeat_name`: `name` → (name, 0); `name:k` → (name, k).

    `logits` is the whole model's output: module "" (a model's own module of that name,
    if it has one, is then not addressable; a classifier's is its output anyway). The prefix
    tokens `name[:k]:cls` are the same module and call (`layout.split_part` tells them)."""
    if layer == LOGITS:
        return "", 0
    layer, _part = split_part(layer)
    name, sep, call = layer.rpartition(":")
    if sep and call.isdigit():
        return name, int(call)
    return layer, 0


class ActivationRecorder(AbstractContextManager["ActivationRecorder"]):
    """Records (N, C, H, W) outputs of the named modules of `model` during a forward pass.

    Use as a context manager (hooks always come off) and call `run(x)` per pass;
    `activations` then maps layer names to tensors on the model's device. A module used
    twice in one pass is recorded as `name` and `name:1`.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None,
                 directions: Mapping[str, DirectionLayer] | None = None) -> None:
        self.model = model
        wanted = set(layers) if layers is not None else None
        # a direction layer: recorded by its source's hook (all of them when recording all)
        self.directions = dict(directions or {})
        if wanted is not None:
            tagged = {n for n in wanted if is_direction_layer(n)}
            missing = sorted(tagged - self.directions.keys())
            if missing:
                raise ValueError(f"no direction set given for the layer {missing[0]!r}")
            self.directions = {n: self.directions[n] for n in tagged}
            wanted = (wanted - tagged) | {d.set.source for d in self.directions.values()}
        self._by_source: dict[str, list[str]] = {}
        for n, d in self.directions.items():
            self._by_source.setdefault(d.set.source, []).append(n)
        # `name:k` and `name:cls` are recorded by the hook on module `name`
        modules = {split_layer_name(n)[0] for n in wanted} if wanted is not None else None
        named = list(model.named_modules())
        self._modules = [
            (name, m) for name, m in named
            if name and name != LOGITS and (modules is None or name in modules)
        ]
        self._record_output = wanted is None or LOGITS in wanted
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._versions: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self.clone_layers: set[str] = set()  # learned: outputs that get overwritten in place
        self.activations: dict[str, torch.Tensor] = {}
        self.kinds: dict[str, str] = {}
        self.layouts: dict[str, str] = {}  # recorded layer → "map", "tokens", "cls", "nhwc"
        # hooks record only inside run(): a caller that runs the model directly must not
        # make them pile up outputs (and memory) pass after pass
        self._active = False
        self._input_hw: tuple[int, int] | None = None
        # the layers to keep this pass (None: every hooked one). The hooks stay on every
        # module and still count calls (so `name:k` stays right); what a pass keeps is its
        # memory: all 152 outputs of EfficientNet-Lite0 alive at once cost the live frame
        # ~7 of its ~24 ms on one CPU thread, the shown layer alone nothing measurable
        self.keep: set[str] | None = None

    def __enter__(self) -> ActivationRecorder:
        try:
            for name, module in self._modules:
                self._handles.append(module.register_forward_hook(self._hook_for(name)))
            if self._record_output:
                self._handles.append(self.model.register_forward_hook(self._on_output))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    @property
    def hooked(self) -> bool:
        """True while its hooks are on the model: from `__enter__` until `remove()`."""
        return bool(self._handles)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook_for(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        kind = None

        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            nonlocal kind
            if not self._active:
                return
            layout = layout_of(output, module, self._input_hw)
            if layout is None:
                return
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = repeat_name(name, call)
            keep = self.keep
            if keep is not None and key not in keep and f"{key}:{CLS}" not in keep:
                return
            if key in self.clone_layers:
                output = output.clone()
            elif not torch.is_inference_mode_enabled():
                self._versions[key] = output._version
            if kind is None:
                kind = module_kind(module)
            self._keep(key, output, layout, kind)

        return hook

    def _keep(self, key: str, output: torch.Tensor, layout: Layout, kind: str) -> None:
        self.activations[key] = as_map(output, layout)
        self.kinds[key] = kind
        self.layouts[key] = layout.kind
        if layout.prefix:
            cls = f"{key}:{CLS}"
            self.activations[cls] = as_map(output, layout, CLS)
            self.kinds[cls] = kind
            self.layouts[cls] = CLS
        for source in (key, f"{key}:{CLS}") if self._by_source else ():
            for name in self._by_source.get(source, ()):
                if source in self.activations:
                    self.activations[name] = self.directions[name].codes(
                        self.activations[source])
                    self.kinds[name] = DIRECTION_KIND
                    self.layouts[name] = self.layouts[source]

    def _on_output(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        """The model's (N, classes) output as the (N, classes, 1, 1) layer `logits`."""
        if self._active and isinstance(output, torch.Tensor) and output.dim() == 2:
            self.activations[LOGITS] = output[:, :, None, None]
            self.kinds[LOGITS] = "output"
            self.layouts[LOGITS] = MAP

    def run(self, x: torch.Tensor, forward: Callable[[torch.Tensor], Any] | None = None) -> Any:
        """One forward pass with recording; returns the model's output.

        Runs under `torch.no_grad()` by default callers; inference mode hides version
        counters, so overwritten layers are then cloned only if already known.
        """
        fwd = forward or self.model
        out = self._pass(fwd, x)
        # a view shares its base's version counter: an in-place write into a token layer's
        # output shows in its grid view too
        overwritten = {k for k, v in self._versions.items() if self.activations[k]._version != v}
        if overwritten:
            self.clone_layers |= overwritten
            out = self._pass(fwd, x)
        return out

    def _pass(self, fwd: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
        self.activations = {}
        self._versions = {}
        self._calls = {}
        self._input_hw = input_size(x)
        self._active = True
        try:
            return fwd(x)
        finally:
            self._active = False

    def layer_infos(self) -> tuple[LayerInfo, ...]:
        """Recorded layers in call order, with (C, H, W) shapes and layouts."""
        return tuple(
            LayerInfo(name, tuple(t.shape[1:]), self.kinds[name], self.layouts.get(name, MAP))
            for name, t in self.activations.items()
        )


class _StopForward(Exception):
    """Raised by `truncated_forward`'s hooks once every chosen layer is recorded."""


def truncated_forward(model: nn.Module, rec: ActivationRecorder, layers: Iterable[str]
                      ) -> tuple[Callable[[torch.Tensor], None], Callable[[], None]]:
    """A forward for `rec.run` that stops once every one of `layers` is recorded (the
    layers above them would run for nothing), and its un-hook. Scans and dissection use it.
    """
    wanted = set(layers)
    modules = dict(model.named_modules())

    def stop(*_: Any) -> None:
        if wanted <= rec.activations.keys():
            raise _StopForward

    # the module of `name`, `name:k`, `name:cls` and `name@tag` alike; `logits` is the model
    # itself. Registered after the recorder's hooks, so they run after them.
    sources = {split_direction_layer(n)[0] for n in wanted}
    names = {"" if n == LOGITS else n.partition(":")[0] for n in sources}
    handles = [modules[n].register_forward_hook(stop) for n in names]

    def forward(x: torch.Tensor) -> None:
        with contextlib.suppress(_StopForward):
            model(x)

    def remove() -> None:
        for h in handles:
            h.remove()

    return forward, remove


def discover_layers(
    model: nn.Module, size: int, device: torch.device,
    directions: Iterable[DirectionSet] = (),
) -> tuple[tuple[LayerInfo, ...], set[str]]:
    """Recordable layers of `model` for a size×size input, and those that need cloning.

    Each of `directions` whose source is there and has its channel count is listed right
    after its source, (K, H, W), kind "concepts"; the others are left out."""
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.no_grad(), ActivationRecorder(model) as rec:
        rec.run(x)
        infos, clone = rec.layer_infos(), set(rec.clone_layers)
    return with_direction_layers(infos, directions), clone


def with_direction_layers(infos: Iterable[LayerInfo], directions: Iterable[DirectionSet]
                          ) -> tuple[LayerInfo, ...]:
    """`infos` with the direction layers of `directions` after their sources."""
    by_source: dict[str, list[DirectionSet]] = {}
    for d in directions:
        by_source.setdefault(d.source, []).append(d)
    out: list[LayerInfo] = []
    for info in infos:
        out.append(info)
        for d in sorted(by_source.get(info.name, ()), key=lambda d: d.name):
            if info.shape and d.channels == info.shape[0]:
                out.append(LayerInfo(d.name, (d.k, *info.shape[1:]), DIRECTION_KIND,
                                     info.layout))
    return tuple(out)


def default_layer(layers: tuple[LayerInfo, ...]) -> str:
    """A middle block of the network: where units are neither edges nor classes."""
    if not layers:
        raise ValueError("the model has no layer with a (C, H, W) output")
    # a transformer's blocks sit one level deeper (torchvision: encoder.layers.encoder_layer_5)
    depth = 2 if any(info.layout == TOKENS for info in layers) else 1
    layers = tuple(i for i in layers if i.kind != DIRECTION_KIND) or layers
    grids = [info for info in layers if info.layout != CLS] or list(layers)
    shallow = [info for info in grids if info.name.count(".") <= depth] or grids
    return shallow[int(len(shallow) * 0.45)].name


def module_kind(module: nn.Module) -> str:
    """What a layer is, for lists: its class name, or for a submodule of a torch.export
    program (an `InterpreterModule`, whatever it was) the operator its graph runs."""
    graph = getattr(module, "graph", None)
    if type(module).__name__ != "InterpreterModule" or graph is None:
        return type(module).__name__
    calls = [n for n in graph.nodes if n.op in ("call_function", "call_module")]
    if len(calls) == 1 and calls[0].op == "call_function":  # a leaf: aten.conv2d.default
        name = getattr(calls[0].target, "__name__", str(calls[0].target))
        return f"exported {name.split('.')[0]}"
    return "exported block"
