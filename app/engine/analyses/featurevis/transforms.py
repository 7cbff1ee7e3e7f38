"""Random transforms applied to the image before each forward, for robust visualizations.

Each transform is a plain function `(x, rngs) -> x` on a (N, 3, H, W) batch in [0, 1], with
one CPU `torch.Generator` per image; `compose` chains them. Every image draws its own shifts,
scales and angles from its own generator, so a unit's image depends on its seed only, not on
which other units share the batch (and a seed gives the same draws on any device). A unit
that responds to a pattern whatever its exact position, scale and angle yields an image of the
pattern instead of adversarial noise that only works at one pixel alignment (Olah et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Rngs = Sequence[torch.Generator]
Transform = Callable[[torch.Tensor, Rngs], torch.Tensor]


def _choices(values: Sequence[float], rngs: Rngs) -> torch.Tensor:
    """One value of `values` per image, each drawn from that image's generator. → (N,)."""
    table = torch.tensor([float(v) for v in values])
    idx = torch.cat([torch.randint(len(table), (1,), generator=g) for g in rngs])
    return table[idx]


def compose(transforms: Sequence[Transform]) -> Transform:
    """One transform applying `transforms` in order."""
    chain = tuple(transforms)

    def apply(x: torch.Tensor, rngs: Rngs) -> torch.Tensor:
        for t in chain:
            x = t(x, rngs)
        return x

    return apply


def pad(width: int, value: float = 0.5) -> Transform:
    """Pad each side by `width` pixels of constant `value` (mid-gray): H → H + 2·width."""

    def apply(x: torch.Tensor, rngs: Rngs) -> torch.Tensor:
        if width <= 0:
            return x
        return F.pad(x, (width, width, width, width), mode="constant", value=value)

    return apply


def crop(x: torch.Tensor, offsets: Sequence[tuple[int, int]], d: int) -> torch.Tensor:
    """Image i cropped to (H-d)×(W-d) from (y, x) = offsets[i]."""
    h, w = x.shape[-2:]
    return torch.stack([x[i, :, oy : oy + h - d, ox : ox + w - d]
                        for i, (oy, ox) in enumerate(offsets)])


def jitter(d: int) -> Transform:
    """Crop a random (H-d)×(W-d) window per image: a shift of 0..d pixels each way."""

    def apply(x: torch.Tensor, rngs: Rngs) -> torch.Tensor:
        if d <= 0:
            return x
        offsets = [(int(oy), int(ox))
                   for oy, ox in (torch.randint(d + 1, (2,), generator=g) for g in rngs)]
        return crop(x, offsets, d)

    return apply


def affine(x: torch.Tensor, scales: torch.Tensor | float,
           degrees: torch.Tensor | float) -> torch.Tensor:
    """Zoom by `scales` and rotate counter-clockwise by `degrees` about the center, per image.

    The size stays H×W (content outside is cut, edges repeat the border), so images of one
    batch stay stackable. `scales`, `degrees`: a number or (N,).
    """
    n = x.shape[0]
    s = torch.as_tensor(scales, dtype=torch.float32).expand(n)
    a = torch.as_tensor(degrees, dtype=torch.float32).expand(n) * (math.pi / 180.0)
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    # affine_grid maps output coordinates to input ones: the inverse of the wanted motion,
    # in normalized coordinates (the images here are square)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rotate(x: torch.Tensor, degrees: torch.Tensor | float) -> torch.Tensor:
    """Rotate counter-clockwise about the center (same size)."""
    return affine(x, 1.0, degrees)


def random_affine(factors: Sequence[float], angles: Sequence[float]) -> Transform:
    """Zoom by a factor from `factors` and rotate by an angle (degrees) from `angles`, per
    image, in one resampling (one blur instead of two)."""

    def apply(x: torch.Tensor, rngs: Rngs) -> torch.Tensor:
        return affine(x, _choices(factors, rngs), _choices(angles, rngs))

    return apply


def standard_transforms(strength: float = 1.0) -> Transform:
    """Lucid's robustness chain: pad 12, jitter 8, scale ±10 %, rotate ±10°, jitter 4.

    `strength` scales every range (0.5: half the shifts, scales and angles); H → H + 12·strength.
    """
    s = strength
    if s <= 0:
        return no_transform
    return compose([
        pad(round(12 * s)),
        jitter(round(8 * s)),
        random_affine([1 + s * (i - 5) / 50 for i in range(11)], [s * a for a in range(-10, 11)]),
        jitter(round(4 * s)),
    ])


def no_transform(x: torch.Tensor, rngs: Rngs) -> torch.Tensor:
    return x


def random_crops(count: int, out_size: int, box: tuple[float, float] = (0.5, 1.0),
                 noise: float = 0.0) -> Transform:
    """MACO's transform: `count` random square crops of each image, batched.

    (N, 3, H, W) → (N·count, 3, out_size, out_size); rows i·count … (i+1)·count−1 are image
    i's crops (`objectives.crop_mean` averages them back to one value per image). Each
    crop's side is a fraction of the image's drawn from `box`; its centre is drawn around
    the middle (σ = 0.15 of the side) and kept inside, so the centre is seen most. Gaussian
    noise of std `noise` goes on each crop. Draws come from each image's own generator
    (the noise from a device generator seeded by it: one draw per image, any device).
    """
    lo, hi = box
    if count <= 0 or not 0 < lo <= hi <= 1:
        raise ValueError(f"crops: count {count}, box {box}: need count ≥ 1, 0 < lo ≤ hi ≤ 1")

    def apply(x: torch.Tensor, rngs: Rngs) -> torch.Tensor:
        n = x.shape[0]
        theta = torch.zeros(n * count, 2, 3)
        seeds = []
        for i, g in enumerate(rngs):
            side = lo + (hi - lo) * torch.rand(count, generator=g)
            centre = 0.5 + 0.15 * torch.randn(count, 2, generator=g)
            half = side[:, None] / 2
            centre = torch.minimum(torch.maximum(centre, half), 1 - half)
            rows = slice(i * count, (i + 1) * count)
            # affine_grid's theta maps output coordinates ([-1, 1]) to input ones
            theta[rows, 0, 0] = theta[rows, 1, 1] = side
            theta[rows, 0, 2] = 2 * centre[:, 0] - 1
            theta[rows, 1, 2] = 2 * centre[:, 1] - 1
            seeds.append(int(torch.randint(1 << 62, (1,), generator=g)))
        src = x.repeat_interleave(count, 0)
        grid = F.affine_grid(theta.to(x.device, x.dtype), [n * count, x.shape[1], out_size,
                                                           out_size], align_corners=False)
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        if noise > 0:
            draws = []
            for s in seeds:
                gen = torch.Generator(device=x.device).manual_seed(s)
                draws.append(torch.randn((count, *out.shape[1:]), generator=gen,
                                         device=x.device, dtype=x.dtype))
            out = out + noise * torch.cat(draws)
        return out

    return apply


def window(x: torch.Tensor, side: int, rngs: Rngs) -> torch.Tensor:
    """A random side×side window of each image at its own scale (per-image offsets)."""
    h, w = x.shape[-2:]
    if side >= min(h, w):
        return x
    offsets = [(int(torch.randint(h - side + 1, (1,), generator=g)),
                int(torch.randint(w - side + 1, (1,), generator=g))) for g in rngs]
    return torch.stack([x[i, :, oy : oy + side, ox : ox + side]
                        for i, (oy, ox) in enumerate(offsets)])
