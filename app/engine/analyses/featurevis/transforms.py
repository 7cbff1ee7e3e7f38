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
from dataclasses import dataclass

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
    The chain runs as one resampling (`fused_standard_transforms`), which draws the same
    numbers and gives the same images as the four steps in turn, at a fraction of the cost.
    """
    s = strength
    if s <= 0:
        return no_transform
    width, shift, last_shift = round(12 * s), round(8 * s), round(4 * s)
    factors = [1 + s * (i - 5) / 50 for i in range(11)]
    angles = [s * a for a in range(-10, 11)]
    if width - shift >= 1:  # a grey margin survives the first jitter: see the fused docstring
        return fused_standard_transforms(width, shift, factors, angles, last_shift)
    return compose([pad(width), jitter(shift), random_affine(factors, angles), jitter(last_shift)])


def fused_standard_transforms(width: int, shift: int, factors: Sequence[float],
                              angles: Sequence[float], last_shift: int) -> FusedTransforms:
    """`pad(width)`, `jitter(shift)`, `random_affine(factors, angles)`, `jitter(last_shift)`
    as one `grid_sample` of the image itself: same draws from each generator, in the same
    order, and the same result up to float rounding (tested against the chain).

    The chain copies the image three times (pad, two crops) and resamples once; gradient
    ascent pays for each copy again in the backward pass. Composed, each output pixel maps to
    one point of the original image: the second crop's offset, the rotation and zoom about the
    centre of the first crop, the first crop's offset, the pad. Outside the image the chain
    sees the pad's grey (its resampling repeats the border, which is grey while `width` >
    `shift` leaves a margin), which is sampling `x − ½` with zeros outside, plus ½.
    Images are square, as `affine` assumes.
    """
    return FusedTransforms(width, shift, tuple(factors), tuple(angles), last_shift)


@dataclass(frozen=True)
class FusedTransforms:
    """Lucid's chain as one resampling; see `fused_standard_transforms`.

    Called with `window` = side, it also takes `window`'s random side×side window of the
    result (the same draws, after the chain's), sampling only those pixels.
    """

    width: int
    shift: int
    factors: tuple[float, ...]
    angles: tuple[float, ...]
    last_shift: int

    def __call__(self, x: torch.Tensor, rngs: Rngs, window: int = 0) -> torch.Tensor:
        n, size = x.shape[0], x.shape[-1]
        first = self._offsets(self.shift, rngs)  # (N, [y, x])
        scale = _choices(self.factors, rngs).double()
        angle = _choices(self.angles, rngs).double() * (math.pi / 180.0)
        second = self._offsets(self.last_shift, rngs)
        mid = size + 2 * self.width - self.shift  # the side after the first crop
        out = mid - self.last_shift
        if 0 < window < out:  # `window`'s draws: y then x, per image
            second = second + torch.tensor(
                [[int(torch.randint(out - window + 1, (1,), generator=g)) for _ in range(2)]
                 for g in rngs], dtype=torch.float64)
            out = window
        # normalized coordinates ([-1, 1], pixel centres) of the output in the affine's image
        idx = torch.arange(out, dtype=torch.float64)
        u = ((2 * (idx[None] + second[:, 1:2]) + 1) / mid - 1)[:, None, :]  # (N, 1, out) x
        v = ((2 * (idx[None] + second[:, 0:1]) + 1) / mid - 1)[:, :, None]  # (N, out, 1) y
        cos = (torch.cos(angle) / scale).view(n, 1, 1)
        sin = (torch.sin(angle) / scale).view(n, 1, 1)
        src_u, src_v = cos * u - sin * v, sin * u + cos * v  # affine_grid's theta, as `affine`
        # → pixel in the affine's image, → in the padded image (first crop), → in the image
        px = ((src_u + 1) * mid - 1) / 2 + first[:, 1].view(n, 1, 1) - self.width
        py = ((src_v + 1) * mid - 1) / 2 + first[:, 0].view(n, 1, 1) - self.width
        grid = torch.stack([(2 * px + 1) / size - 1, (2 * py + 1) / size - 1], -1)
        sampled = F.grid_sample(x - 0.5, grid.to(x.device, x.dtype), mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        return sampled + 0.5

    @staticmethod
    def _offsets(d: int, rngs: Rngs) -> torch.Tensor:
        """`jitter(d)`'s draws: (N, [y, x]) offsets in 0..d (no draw when d is 0)."""
        return torch.tensor([[0, 0] if d <= 0 else
                             [int(v) for v in torch.randint(d + 1, (2,), generator=g)]
                             for g in rngs], dtype=torch.float64)


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
