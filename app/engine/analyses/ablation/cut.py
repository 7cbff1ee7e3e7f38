"""Cutting a network at a layer with torch.fx, and the two ways to run deletion levels.

For every image the layers below the ablated layer L are computed once: the network is cut
at L into a *prefix* (input → every value alive at the cut: L's output, and any skip
connection that crosses it) and a *suffix* (those values → logits). Each deletion level
then only runs the suffix on the cached values with L's chosen channels zeroed. A model fx
cannot trace, or whose split does not reproduce the intact logits, falls back to the naive
loop (the whole network per level, with `Ablation` hooks), and the result says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from app.engine.analyses.ablation.deletion import Ablation, AblationError
from app.engine.runtime.directions import DirectionLayer
from app.engine.runtime.layout import MAP, as_map, input_size, layout_of, split_part
from app.engine.runtime.recorder import split_layer_name
from app.engine.runtime.truncate import LayerNotReached, NotATensor, UnknownLayer, layer_layout

# -- cutting the network at a layer --------------------------------------------------------

class CutError(RuntimeError):
    """The network cannot be split at that layer; the naive loop is used instead."""


class _CutTracer(fx.Tracer):
    """Traces only through the modules that contain the target; every other one is a leaf.

    Leaves are called as they are, so their code never has to be traceable (e.g. padding
    computed from the input's shape): the graph is as coarse as the cut allows.

    While it traces, torch.fx swaps `nn.Module.__call__` and `__getattr__` for *every*
    thread. The live worker runs the live model at that very moment, and its module calls
    reached this tracer, which refused modules outside the traced copy ("NameError: module is
    not installed as a submodule": a failed frame each time ablation curves started). Calls
    from any other thread are passed straight through.
    """

    def __init__(self, ancestors: set[str]) -> None:
        super().__init__()
        self.ancestors = ancestors
        self._thread = threading.get_ident()

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self._thread = threading.get_ident()
        return super().trace(root, concrete_args)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)  # another thread's model, running for real
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.ancestors


@dataclass
class CutModel:
    """`prefix(x)` → tuple of values alive at the cut; `suffix(*values)` → the output."""

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    layer_index: int  # where L's output sits in the tuple
    live: tuple[str, ...]  # names of the values crossing the cut (for messages)


def cut_at(model: nn.Module, layer: str) -> CutModel:
    """Split `model` right after the module `layer` (`name:k`: its k-th call). CutError if not."""
    name, call = split_layer_name(layer)
    try:
        model.get_submodule(name)
    except AttributeError:
        raise AblationError(f"no layer named {name!r} in the model") from None
    parts = name.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    try:
        graph = _CutTracer(ancestors).trace(model)
    except Exception as exc:
        raise CutError(f"torch.fx cannot trace the model: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
    if len(calls) <= call:
        raise CutError(f"{layer} is not a module call in the traced graph")
    target = calls[call]
    nodes = list(graph.nodes)
    pos = nodes.index(target)
    before, after = nodes[: pos + 1], nodes[pos + 1 :]
    inside = set(before)
    crossing = [n for n in before if any(u not in inside for u in n.users)]
    live = [n for n in crossing if n.op != "get_attr"]  # parameters are not per image

    pre = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in before:
        env[n] = pre.node_copy(n, lambda a: env[a])
    pre.output(tuple(env[n] for n in live))

    post = fx.Graph()
    env2: dict[fx.Node, fx.Node] = {n: post.placeholder(f"cut_{n.name}") for n in live}
    for n in crossing:
        if n.op == "get_attr":
            env2[n] = post.node_copy(n, lambda a: env2[a])
    for n in after:
        env2[n] = post.node_copy(n, lambda a: env2[a])
    prefix, suffix = fx.GraphModule(model, pre), fx.GraphModule(model, post)
    return CutModel(prefix, suffix, live.index(target), tuple(n.name for n in live))


# -- running levels: the cut and the naive way ---------------------------------------------

class _Redo(Exception):  # control flow
    """The suffix wrote into a cached value in place: recompute it, clone it from now on."""


class CutRunner:
    method = "cut"

    def __init__(self, cut: CutModel) -> None:
        self.cut = cut
        self.clone: set[int] = set()

    def prepare(self, x: torch.Tensor) -> tuple[Any, ...]:
        return self.cut.prefix(x)

    def intact(self, x: torch.Tensor) -> tuple[tuple[Any, ...], torch.Tensor, torch.Tensor]:
        """(state, L's output, intact output) for a batch."""
        state = self.prepare(x)
        none = torch.zeros(1, dtype=torch.bool, device=x.device)
        try:
            out = self.run(state, none)
        except _Redo:  # learned which cached values the suffix overwrites; they are cloned now
            state = self.prepare(x)
            out = self.run(state, none)
        return state, state[self.cut.layer_index], out

    def run(self, state: tuple[Any, ...], mask: torch.Tensor) -> torch.Tensor:
        li = self.cut.layer_index
        args = list(state)
        out_l = args[li]
        # a new tensor even with nothing deleted: the cached output must stay intact
        args[li] = torch.where(mask, out_l.new_zeros(()), out_l)
        watch = []
        for i, a in enumerate(state):
            if i == li or not isinstance(a, torch.Tensor):
                continue
            if i in self.clone:
                args[i] = a.clone()
            else:
                watch.append((i, a._version))
        out = self.cut.suffix(*args)
        changed = {i for i, v in watch if state[i]._version != v}
        if changed:
            self.clone |= changed
            raise _Redo
        return out

    def nbytes(self, state: tuple[Any, ...]) -> int:
        return sum(a.numel() * a.element_size() for a in state if isinstance(a, torch.Tensor))


class NaiveRunner:
    """The whole network for every level, with the same ablation as the live view."""

    method = "naive"

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self.layer = layer
        self.ablation = Ablation(model, {layer: ()})
        name, call = split_layer_name(layer)
        self._module = model.get_submodule(name)
        self._call = call
        self._part = split_part(layer)[1]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def intact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []

        def keep(m: nn.Module, _i: Any, out: Any) -> None:
            # counted and seen as the recorder does: the k-th map, tokens as their grid
            layout = layout_of(out, m, input_size(x))
            if layout is not None:
                view = as_map(out, layout, self._part)
                seen.append(view.clone() if len(seen) == self._call else view)

        h = self._module.register_forward_hook(keep)
        try:
            out = self.model(x)
        finally:
            h.remove()
        return x, seen[self._call], out

    def run(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        units = torch.nonzero(mask.flatten()).flatten().tolist()
        self.ablation.set(self.layer, units)
        with self.ablation:
            return self.model(state)

    def nbytes(self, state: torch.Tensor) -> int:
        return state.numel() * state.element_size()


class DirectionRunner(NaiveRunner):
    """The naive loop for a direction layer (`L@nmf32`): its units are the codes of the
    source's map, and deleting them subtracts their components there (`Ablation`)."""

    def __init__(self, model: nn.Module, directions: DirectionLayer) -> None:
        self.model = model
        self.layer = directions.set.name
        self.directions = directions
        self.ablation = Ablation(model, {self.layer: ()}, directions={self.layer: directions})
        source = directions.set.source
        name, call = split_layer_name(source)
        self._module = model.get_submodule(name)
        self._call = call
        self._part = split_part(source)[1]

    def intact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state, source, out = super().intact(x)
        return state, self.directions.codes(source), out


def make_runner(model: nn.Module, layer: str, method: str = "auto",
                probe: torch.Tensor | None = None,
                directions: DirectionLayer | None = None) -> tuple[Any, str]:
    """A level runner for `layer` and a note: `method` is "auto", "cut" or "naive".

    "auto" tries the cut and checks on `probe` (a batch) that prefix → suffix gives the
    intact output; anything else falls back to the naive loop, and the note says why. A
    direction layer (`directions`) always runs the naive loop, deleting on its source.
    """
    if directions is not None:
        return DirectionRunner(model, directions), "naive loop: a direction layer"
    if method == "naive":
        return NaiveRunner(model, layer), "naive loop (asked for)"
    if probe is not None and method == "auto":
        try:
            layout = layer_layout(model, layer, probe[:1])
        except (UnknownLayer, LayerNotReached, NotATensor):
            layout = None  # the cut below reports a bad layer as it always did
        if split_part(layer)[1] or (layout is not None and layout.kind != MAP):
            # the cut's runner zeroes channels along dim 1 of the raw output: only a map's
            return NaiveRunner(model, layer), "naive loop: a token or channels-last layer"
    try:
        cut = cut_at(model, layer)
        runner = CutRunner(cut)
        if probe is not None:
            with torch.no_grad():
                want = model(probe)
                _, _, got = runner.intact(probe)
            if not isinstance(got, torch.Tensor) or got.shape != want.shape \
                    or not torch.allclose(got, want, rtol=1e-5, atol=1e-5):
                raise CutError("the split network does not reproduce the intact output")
        live = ", ".join(cut.live)
        return runner, f"cut at {layer}; values kept per image: {live}"
    except CutError as exc:
        if method == "cut":
            raise
        return NaiveRunner(model, layer), f"naive loop: {exc}"


