"""The activation mosaic built on the device; same layout and rounding as app.core.tiling."""

from __future__ import annotations

import torch

from app.core.tiling import GridGeometry


def normalize_on_device(acts: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """(C, H, W) float → (C, H, W) uint8 scaled by each channel's or the layer's range."""
    a = acts.float()
    if per_channel:
        flat = a.flatten(1)
        lo = flat.amin(1).view(-1, 1, 1)
        hi = flat.amax(1).view(-1, 1, 1)
    else:
        lo, hi = a.amin(), a.amax()
    span = hi - lo
    span = torch.where(span > 0, span, torch.ones_like(span))
    return ((a - lo) / span * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


def tile_on_device(maps: torch.Tensor, g: GridGeometry, fill: int = 0) -> torch.Tensor:
    """(C, H, W) uint8 → (g.height, g.width) uint8 mosaic, row-major by unit."""
    c, h, w = maps.shape
    cells = maps.new_full((g.rows * g.cols, h + g.pad, w + g.pad), fill)
    cells[:c, :h, :w] = maps
    mosaic = cells.view(g.rows, g.cols, h + g.pad, w + g.pad).permute(0, 2, 1, 3)
    return mosaic.reshape(g.rows * (h + g.pad), g.cols * (w + g.pad))[: g.height, : g.width]
