"""Regularizers that keep preferred images natural-looking.

Two kinds:

- *Step operators* (Yosinski et al. 2015, "Understanding Neural Networks Through Deep
  Visualization"): applied in place to the centered pixels after each gradient step,
  `op(step, pixels, grad)`. L2 decay pulls toward gray, Gaussian blur every N steps removes
  high frequencies, and clipping zeroes pixels with a small norm or a small contribution to
  the activation so that only the parts the unit cares about remain.
- *Penalties*: differentiable terms per image, (N, 3, H, W) → (N,), subtracted from the
  objective. Total variation (Mahendran & Vedaldi 2015) favours piecewise smooth images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

StepOp = Callable[[int, torch.Tensor, torch.Tensor], None]


def gaussian_kernel1d(sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Normalized 1-D Gaussian of std `sigma` pixels, radius ceil(truncate·sigma). → (2r+1,)."""
    radius = max(1, math.ceil(truncate * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel, reflecting at the edges. (N, C, H, W) → same."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma).to(x.device, x.dtype)
    r = (k.numel() - 1) // 2
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    mode = "reflect" if min(h, w) > r else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def l2_decay(rate: float) -> StepOp:
    """pixels ← (1 - rate) · pixels: a pull toward mid-gray every step."""

    def op(step: int, x: torch.Tensor, grad: torch.Tensor) -> None:
        x.mul_(1.0 - rate)

    return op


def blur_every(every: int, sigma: float) -> StepOp:
    """Gaussian blur of std `sigma` on steps divisible by `every`."""

    def op(step: int, x: torch.Tensor, grad: torch.Tensor) -> None:
        if every > 0 and step % every == 0:
            x.copy_(gaussian_blur(x, sigma))

    return op


def _zero_below_percentile(x: torch.Tensor, score: torch.Tensor, percentile: float) -> None:
    """Zero the pixels of each image whose `score` (N, H, W) is below its `percentile`."""
    flat = score.flatten(1)
    cut = torch.quantile(flat, percentile / 100.0, dim=1, keepdim=True)
    keep = (flat >= cut).view_as(score).unsqueeze(1)
    x.mul_(keep.to(x.dtype))


def clip_small_norm(percentile: float) -> StepOp:
    """Zero pixels whose color-vector norm is in the lowest `percentile` % of the image."""

    def op(step: int, x: torch.Tensor, grad: torch.Tensor) -> None:
        if percentile > 0:
            _zero_below_percentile(x, x.norm(dim=1), percentile)

    return op


def clip_small_contribution(percentile: float) -> StepOp:
    """Zero pixels whose contribution |Σ_c x·∂a/∂x| is in the lowest `percentile` %.

    The contribution is the first-order change of the activation when the pixel is set to
    gray, so these are the pixels the unit does not care about.
    """

    def op(step: int, x: torch.Tensor, grad: torch.Tensor) -> None:
        if percentile > 0:
            _zero_below_percentile(x, (x * grad).sum(dim=1).abs(), percentile)

    return op


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV per image: Σ |horizontal| + |vertical| differences / (H·W). → (N,)."""
    h, w = x.shape[-2:]
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
    return (dx + dy) / (h * w)


def l2_norm(x: torch.Tensor, center: float = 0.5) -> torch.Tensor:
    """Root-mean-square distance of each image from mid-gray. → (N,)."""
    return ((x - center) ** 2).flatten(1).mean(1).sqrt()
