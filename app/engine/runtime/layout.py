"""Layer outputs of every layout seen as (N, C, H, W) maps, and edits written back.

Everything downstream of the hooks (tiling, scan, dissection, render objectives, attribution,
ablation) works on (N, C, H, W) feature maps. Transformers do not produce those:

- a ViT block outputs tokens, (N, T, C) with T = P + h·w: P prefix tokens (the class token,
  distillation and register tokens; they come first in torchvision and timm) ahead of an h×w
  grid of patch tokens, row-major;
- Swin, ConvNeXt's MLPs and many timm models run channels-last, (N, H, W, C).

`layout_of` tells which one an output is from its shape (plus the module, to break a tie,
and the input's size, to tell a map from a windowed tensor); `as_map` gives the (N, C, h, w)
*view* of it (no copy: the recorder keeps outputs by reference, and an in-place write still
shows in the view's version counter), and `from_map` builds the output of the same layout
from an edited map (ablation, explain). One place, so the recorder, `forward_to`, the
deletion hooks and the attribution hooks agree on what a layer is and on what `name:k`
(the k-th call with a recordable output) counts.

The prefix tokens of a token layer are a layer of their own, `NAME:cls`: an (N, C, 1, P)
map, one column per prefix token (class token first), so that every view of a unit works on
them too.

How the shape is read, and where it cannot be: the token grid is square (the app feeds
square crops); a token count with no square grid within `MAX_PREFIX` extra tokens, or a 4-D
output that is neither (N, C, h, w) nor (N, h, w, C) with h×w of the input's aspect, is
not recordable (MaxViT's windowed (N, windows, tokens, C) tensors, q/k heads). Where a
windowed tensor happens to look like a map, (N, tokens, windows, windows) with a square
window count (MaxViT's grid partition), it is recorded as one: shape cannot tell. When
C = H = W the module decides: a Linear or LayerNorm acts on the last dimension, so its
output is channels-last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MAP, TOKENS, NHWC = "map", "tokens", "nhwc"
CLS = "cls"  # the layer-name suffix of a token layer's prefix tokens, and their layout
MAX_PREFIX = 8  # class + distillation + register tokens: timm's largest models use 1 + 4


@dataclass(frozen=True)
class Layout:
    """How one layer's output is laid out: `kind` map/tokens/nhwc; a token layer's `prefix`
    tokens and its `grid` (h, w) of patch tokens."""

    kind: str
    prefix: int = 0
    grid: tuple[int, int] = (0, 0)


_MAP = Layout(MAP)
_NHWC = Layout(NHWC)


def _channels_last_module(module: nn.Module | None, channels: int) -> bool:
    if isinstance(module, nn.Linear):
        return module.out_features == channels
    if isinstance(module, nn.LayerNorm):
        return tuple(module.normalized_shape) == (channels,)
    return False


def _same_aspect(h: int, w: int, input_hw: tuple[int, int]) -> bool:
    """Whether an h×w map can be the input's grid: the same aspect, give or take the
    rounding of one row or column of strided sizes."""
    ih, iw = input_hw
    return abs(h * iw - w * ih) <= ih + iw


def layout_of(output: object, module: nn.Module | None = None,
              input_hw: tuple[int, int] | None = None) -> Layout | None:
    """The layout of a module's output, or None when it is no map, token grid or NHWC map.

    `input_hw`, the network's input (H, W), tells a non-square map from a windowed tensor;
    without it a non-square 4-D output is a map, as it always was recorded."""
    if not isinstance(output, torch.Tensor):
        return None
    if output.dim() == 4:
        _, a, b, c = output.shape
        square = input_hw is None or input_hw[0] == input_hw[1]
        if square:
            nchw, nhwc = b == c, a == b
        else:
            assert input_hw is not None
            nchw, nhwc = _same_aspect(b, c, input_hw), _same_aspect(a, b, input_hw)
        if nchw and nhwc:  # C = H = W: only the module can tell
            return _NHWC if _channels_last_module(module, c) else _MAP
        if nhwc:
            return _NHWC
        if nchw or (input_hw is None and not _channels_last_module(module, c)):
            return _MAP
        return None
    if output.dim() == 3:
        tokens = output.shape[1]
        for prefix in range(min(MAX_PREFIX, tokens - 1) + 1):
            side = math.isqrt(tokens - prefix)
            if side >= 2 and side * side == tokens - prefix:
                return Layout(TOKENS, prefix, (side, side))
    return None


def input_size(x: object) -> tuple[int, int] | None:
    """(H, W) of an (N, 3, H, W) network input, for `layout_of`; None for anything else."""
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return int(x.shape[-2]), int(x.shape[-1])
    return None


def as_map(output: torch.Tensor, layout: Layout, part: str = "") -> torch.Tensor:
    """(N, C, h, w) view of `output`; `part` CLS: the prefix tokens as (N, C, 1, P)."""
    if layout.kind == MAP:
        return output
    if layout.kind == NHWC:
        return output.permute(0, 3, 1, 2)
    p = layout.prefix
    if part == CLS:
        return output[:, :p].transpose(1, 2).unsqueeze(2)
    return output[:, p:].unflatten(1, layout.grid).permute(0, 3, 1, 2)


def from_map(output: torch.Tensor, layout: Layout, new: torch.Tensor,
             part: str = "") -> torch.Tensor:
    """The output of `layout` whose map (or `part`) is `new` (N', C, h, w); N' may differ
    from `output`'s N when `output` has one row (the untouched tokens are then repeated)."""
    if layout.kind == MAP:
        return new
    if layout.kind == NHWC:
        return new.permute(0, 2, 3, 1)
    p = layout.prefix
    rows = new.shape[0]
    if part == CLS:
        edited = new.squeeze(2).transpose(1, 2)
        rest = output[:, p:]
        return torch.cat([edited, rest.expand(rows, *rest.shape[1:])], 1)
    grid = new.flatten(2).transpose(1, 2)
    if p == 0:
        return grid
    head = output[:, :p]
    return torch.cat([head.expand(rows, *head.shape[1:]), grid], 1)


def split_part(layer: str) -> tuple[str, str]:
    """`name:cls` → (name, CLS); any other layer name → (name, "")."""
    base, sep, part = layer.rpartition(":")
    if sep and part == CLS:
        return base, CLS
    return layer, ""


