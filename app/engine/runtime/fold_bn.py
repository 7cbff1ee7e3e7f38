"""Fold eval-mode batch norms into the convolutions that feed them, on a private model copy.

In eval mode a BatchNorm2d is a per-channel affine map, so `bn(conv(x))` is one convolution
with scaled weights and a shifted bias. Gradient ascent runs the layers below its target
forward and backward hundreds of times; on the CPU the batch norms' backward alone is a
quarter of a step, and in channels-last layout they fall off the fast path entirely. Folding
them removes that cost and changes the result only by float rounding.

Which batch norm follows which convolution is found by running the model once with hooks
(a batch norm whose input *is* a convolution's output tensor), so any architecture works
without tracing it. A convolution whose output is also used elsewhere (a skip connection)
cannot be folded; hooks cannot see such a use, so the fold is checked numerically on the
caller's output and undone entirely if it changed anything beyond rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class _Pair:
    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    parent: nn.Module  # the module holding `bn` as attribute `attr`
    attr: str


def _foldable_bn(m: nn.Module) -> bool:
    # the exact class: a subclass (timm's BatchNormAct2d, say) may do more than the affine map
    return (type(m) is nn.BatchNorm2d and not m.training
            and m.running_mean is not None and m.running_var is not None)


def _foldable_conv(m: nn.Module) -> bool:
    # nn.Conv2d itself, or a subclass known to only pad before it (EfficientNet-Lite's TF
    # "SAME" conv); others (weight-standardized convs, say) would undo the scaled weights
    from app.engine.runtime.efficientnet_lite import Conv2dSame

    return type(m) in (nn.Conv2d, Conv2dSame) and m.padding_mode == "zeros"


def find_pairs(model: nn.Module, example: torch.Tensor,
               run: Callable[[nn.Module, torch.Tensor], Any],
               keep: Collection[nn.Module] = ()) -> list[_Pair]:
    """(conv, bn) pairs where the bn's input is the conv's output, each run once per pass.

    `keep`: modules whose own output must stay as it is (the target layer, say): a conv or
    batch norm listed there is left alone.
    """
    parents = {id(child): (parent, name) for parent in model.modules()
               for name, child in parent.named_children()}
    calls: dict[int, int] = {}
    produced: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}  # id(output) → conv, output
    found: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def on_conv(module: nn.Module, inputs: Any, output: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        if isinstance(output, torch.Tensor):  # the reference keeps the id from being reused
            assert isinstance(module, nn.Conv2d)  # hooked on convs only
            produced[id(output)] = (module, output)

    def on_bn(module: nn.Module, inputs: Any, output: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        source = produced.get(id(inputs[0])) if inputs else None
        if source is not None and source[1] is inputs[0] and isinstance(module, nn.BatchNorm2d):
            found.append((source[0], module))

    handles = []
    for m in model.modules():
        if _foldable_conv(m):
            handles.append(m.register_forward_hook(on_conv))
        elif _foldable_bn(m):
            handles.append(m.register_forward_hook(on_bn))
    try:
        with torch.no_grad():
            run(model, example)
    finally:
        for h in handles:
            h.remove()
    keep_ids = {id(m) for m in keep}
    pairs = []
    for conv, bn in found:
        if (calls[id(conv)] != 1 or calls[id(bn)] != 1 or id(conv) in keep_ids or id(bn) in keep_ids
                or conv.out_channels != bn.num_features or id(bn) not in parents
                or bool((bn_affine(bn)[0] == 0).any())):  # a zero scale loses the conv's output
            continue
        parent, attr = parents[id(bn)]
        pairs.append(_Pair(conv, bn, parent, attr))
    return pairs


@torch.no_grad()
def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), (C,) each: eval-mode `bn(z)` is `z · scale + shift` per channel."""
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None:
        raise ValueError("a batch norm without running statistics has no fixed affine form")
    scale = var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach().clone(), shift.detach().clone()


@torch.no_grad()
def _fold(pair: _Pair) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fold `pair.bn` into `pair.conv` and put an Identity in its place; → the conv's old
    weight and bias, to undo it."""
    conv, bn = pair.conv, pair.bn
    old_w = conv.weight.detach().clone()
    old_b = conv.bias.detach().clone() if conv.bias is not None else None
    scale, shift = bn_affine(bn)
    bias = old_b * scale + shift if old_b is not None else shift
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.clone(), requires_grad=False)
    else:
        conv.bias.copy_(bias)
    setattr(pair.parent, pair.attr, nn.Identity())
    return old_w, old_b


@torch.no_grad()
def _unfold(pair: _Pair, old_w: torch.Tensor, old_b: torch.Tensor | None) -> None:
    pair.conv.weight.copy_(old_w)
    if old_b is None:
        pair.conv.bias = None
    elif pair.conv.bias is not None:
        pair.conv.bias.copy_(old_b)
    setattr(pair.parent, pair.attr, pair.bn)


def fold_batchnorms(model: nn.Module, example: torch.Tensor,
                    run: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                    keep: Collection[nn.Module] = (), rtol: float = 1e-4,
                    folded: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] | None = None,
                    ) -> int:
    """Fold every eval-mode batch norm that directly follows a convolution, in place.

    `run(model, x)` is the output the fold must preserve (e.g. a truncated forward to the
    layer being visualized). It is compared before and after on `example` and on random
    normal noise of its shape (one input alone can pass by luck: a map that is all zero
    there); if any element moves by more than `rtol` of the output's largest magnitude, or
    the check itself fails, every fold is undone. → the number of batch norms folded.

    `folded`, if given, receives conv → (scale, shift) of each fold: the conv now outputs
    `z · scale + shift`, so its own output `z` is `(out - shift) / scale` (never 0).
    """
    pairs = find_pairs(model, example, run, keep)
    if not pairs:
        return 0
    noise = torch.randn(example.shape, generator=torch.Generator().manual_seed(0))
    inputs = [example, noise.to(example.device, example.dtype)]
    with torch.no_grad():
        before = [run(model, x).detach().clone() for x in inputs]
    saved = [(pair, *_fold(pair)) for pair in pairs]
    try:
        with torch.no_grad():
            after = [run(model, x) for x in inputs]
        ok = all(_close(a, b, rtol) for a, b in zip(after, before, strict=True))
    except BaseException:
        ok = False
        _undo(saved)
        raise
    if ok:
        if folded is not None:
            folded.update({pair.conv: bn_affine(pair.bn) for pair in pairs})
        return len(pairs)
    _undo(saved)
    return 0


def _close(after: torch.Tensor, before: torch.Tensor, rtol: float) -> bool:
    tolerance = rtol * float(before.abs().max().clamp_min(1e-6))
    return after.shape == before.shape and float((after - before).abs().max()) <= tolerance


def _undo(saved: list[tuple[_Pair, torch.Tensor, torch.Tensor | None]]) -> None:
    for pair, old_w, old_b in reversed(saved):
        _unfold(pair, old_w, old_b)
