"""Image parametrizations: what gradient ascent actually optimizes.

A parametrization owns the tensors being optimized and maps them to an RGB image in [0, 1],
shape (N, 3, H, W). Three are offered:

- `PixelImage`: the pixels themselves, stored centered on mid-gray, as in Yosinski et al.
  2015. Its regularizers (decay, blur, clipping) act directly on `pixels` between steps.
- `FourierImage`: Lucid's parametrization (Olah et al. 2017). The image is the inverse real
  FFT of a spectrum scaled by 1/f, so every frequency starts with the same effective learning
  rate and high-frequency noise no longer dominates; colors go through the square root of the
  ImageNet color covariance ("decorrelated" space) and a sigmoid keeps them valid.
- `MacoImage`: MACO (Fel et al. 2023). The Fourier magnitude is fixed at that of natural
  images (`spectrum.py`) and only the phase is optimized, so the image keeps natural
  images' energy at every frequency whatever the unit asks for; deep units, which drive
  Lucid's parametrization to high-frequency noise, get pictures. The phase is made
  antisymmetric where the rfft2 layout holds conjugate pairs (columns 0 and Nyquist), so the
  inverse FFT is exact and the magnitude of the raw image *is* the fixed one, every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Square root of ImageNet's RGB covariance (U·sqrt(S) of its SVD), as published with Lucid.
# Columns are the principal color directions: luminance, then red-blue, then green-magenta.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([
    [0.26, 0.09, 0.02],
    [0.27, 0.00, -0.05],
    [0.27, -0.09, 0.03],
])
_MAX_COLUMN_NORM = float(COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max())
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / _MAX_COLUMN_NORM

# Lucid's constant: dividing the inverse FFT by 4 keeps the sigmoid out of saturation early.
FFT_MAGIC = 4.0
# MACO's unit-RMS image times this before the sigmoid: pixels then spread with std ≈ 0.2,
# as in the paper's code (its images span the model's whole input range); at 1 they are
# half as contrasted, and a fixed magnitude caps how far a unit can be driven.
MACO_CONTRAST = 2.0


def decorrelate_colors(x: torch.Tensor) -> torch.Tensor:
    """Decorrelated color space → RGB (still unbounded). (N, 3, H, W) → (N, 3, H, W)."""
    m = COLOR_CORRELATION.to(x.device, x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x)


def correlate_colors(rgb: torch.Tensor) -> torch.Tensor:
    """Inverse of `decorrelate_colors`. (N, 3, H, W) → (N, 3, H, W)."""
    m_inv = torch.linalg.inv(COLOR_CORRELATION.double()).to(rgb.device, rgb.dtype)
    return torch.einsum("ij,njhw->nihw", m_inv, rgb)


def rfft2d_freqs(height: int, width: int) -> torch.Tensor:
    """Frequency magnitude (cycles per pixel) of each rfft2 coefficient. → (H, W // 2 + 1)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """Lucid's 1/f scale of each coefficient, capped at the lowest frequency. → (H, W//2+1)."""
    freqs = rfft2d_freqs(height, width)
    return 1.0 / torch.clamp(freqs, min=1.0 / max(height, width)) ** decay_power


def spectrum_to_image(spectrum: torch.Tensor, scale: torch.Tensor, height: int,
                      width: int) -> torch.Tensor:
    """Scaled real/imag spectrum (N, C, H, W//2+1, 2) → unbounded image (N, C, H, W)."""
    coeffs = torch.view_as_complex(spectrum.contiguous()) * scale
    return torch.fft.irfft2(coeffs, s=(height, width), norm="ortho") / FFT_MAGIC


def image_to_spectrum(image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of `spectrum_to_image`. (N, C, H, W) → (N, C, H, W//2+1, 2)."""
    coeffs = torch.fft.rfft2(image * FFT_MAGIC, norm="ortho") / scale
    return torch.view_as_real(coeffs).contiguous()


def _randn(rngs: Sequence[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise, image i drawn from rngs[i] (on the CPU). → (N, *shape)."""
    return torch.stack([torch.randn(shape, generator=g) for g in rngs])


class PixelImage:
    """Plain pixels, centered: image = clamp(pixels + 0.5, 0, 1). `pixels` is (N, 3, H, W)."""

    kind = "pixel"

    def __init__(self, rngs: Sequence[torch.Generator], height: int, width: int,
                 device: torch.device, sd: float = 0.01) -> None:
        init = _randn(rngs, (3, height, width)) * sd
        self.pixels = init.to(device).requires_grad_(True)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.pixels]

    def __call__(self) -> torch.Tensor:
        # Values outside [0, 1] are projected back between steps (see `project`), so this
        # clamp only guards the forward; it rarely cuts gradients.
        return (self.pixels + 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def project(self) -> None:
        """Keep pixels inside the valid range (Yosinski's optimizer clips after each step)."""
        self.pixels.clamp_(-0.5, 0.5)


class FourierImage:
    """Lucid's 1/f-scaled Fourier parametrization with (optionally) decorrelated color."""

    kind = "fourier"

    def __init__(self, rngs: Sequence[torch.Generator], height: int, width: int,
                 device: torch.device, sd: float = 0.01, decorrelate: bool = True,
                 decay_power: float = 1.0) -> None:
        self.height, self.width, self.decorrelate = height, width, decorrelate
        self.scale = spectrum_scale(height, width, decay_power).to(device)
        init = _randn(rngs, (3, height, width // 2 + 1, 2)) * sd
        self.spectrum = init.to(device).requires_grad_(True)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def raw(self) -> torch.Tensor:
        """The unbounded image before color decorrelation and sigmoid. (N, 3, H, W)."""
        return spectrum_to_image(self.spectrum, self.scale, self.height, self.width)

    def __call__(self) -> torch.Tensor:
        x = self.raw()
        if self.decorrelate:
            x = decorrelate_colors(x)
        return torch.sigmoid(x)

    def project(self) -> None:
        """Nothing to project: the sigmoid keeps every image valid."""


def unit_rms_magnitude(magnitude: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`magnitude` (3, H, W//2+1) with its mean (DC) zeroed, scaled so that any image with
    it has unit root-mean-square over its 3×H×W values (Parseval, norm="ortho").

    The scale of a measured spectrum depends on how it was measured; only its shape matters.
    Zeroing DC makes every image's mean colour mid-gray after the sigmoid: the mean colour
    has no structure to show, and a fixed tint would bias every render alike.
    """
    m = magnitude.clone()
    m[:, 0, 0] = 0.0
    # columns 1..W/2-1 stand for two coefficients each of the full spectrum
    weight = torch.full((width // 2 + 1,), 2.0)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    energy = float((m * m * weight.to(m)).sum())
    if energy <= 0:
        raise ValueError("a magnitude spectrum with no energy outside its mean")
    return m * math.sqrt(3 * height * width / energy)


def hermitian_phase(theta: torch.Tensor, width: int) -> torch.Tensor:
    """Phases (..., H, W//2+1) made odd, θ(-k) = -θ(k), in the self-conjugate columns of the
    rfft2 layout (0, and W/2 for even W): the spectrum is then that of a real image, so
    irfft2 keeps every coefficient as given (it would otherwise average conjugate pairs and
    change their magnitudes)."""
    h = theta.shape[-2]
    cols = [0] + ([width // 2] if width % 2 == 0 else [])
    neg = (-torch.arange(h, device=theta.device)) % h
    edge = theta[..., cols]
    out = theta.clone()
    out[..., cols] = 0.5 * (edge - edge[..., neg, :])
    return out


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit std over each image's values (dim 0 is the batch)."""
    dims = tuple(range(1, x.dim()))
    x = x - x.mean(dims, keepdim=True)
    return x / (x.std(dims, keepdim=True) + eps)


class MacoImage:
    """MACO: a fixed natural-image magnitude spectrum, an optimized phase (per image).

    `magnitude`: (3, H, W//2+1), e.g. `spectrum.magnitude_at(spectrum, H, W)`, normalised by
    `unit_rms_magnitude`. The phase is standardized per image before use (as in the paper's
    code): its scale cannot grow, so one learning rate suits every unit.
    """

    kind = "maco"

    def __init__(self, rngs: Sequence[torch.Generator], height: int, width: int,
                 device: torch.device, magnitude: torch.Tensor,
                 decorrelate: bool = True) -> None:
        if magnitude.shape != (3, height, width // 2 + 1):
            raise ValueError(f"magnitude of shape {tuple(magnitude.shape)} for a "
                             f"{height}×{width} image")
        self.height, self.width, self.decorrelate = height, width, decorrelate
        self.magnitude = unit_rms_magnitude(magnitude.float(), height, width).to(device)
        init = _randn(rngs, (3, height, width // 2 + 1))
        self.phase = init.to(device).requires_grad_(True)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.phase]

    def raw(self) -> torch.Tensor:
        """The image before colour decorrelation and sigmoid; its |rfft2| (norm="ortho") is
        `self.magnitude` exactly. (N, 3, H, W)."""
        theta = hermitian_phase(standardize(self.phase), self.width)
        coeffs = torch.polar(self.magnitude.expand_as(theta), theta)
        return torch.fft.irfft2(coeffs, s=(self.height, self.width), norm="ortho")

    def __call__(self) -> torch.Tensor:
        x = self.raw()
        if self.decorrelate:
            x = decorrelate_colors(x)
        return torch.sigmoid(MACO_CONTRAST * x)

    def project(self) -> None:
        """Nothing to project: the magnitude is fixed by construction, the sigmoid bounds."""


Param = PixelImage | FourierImage | MacoImage


def make_param(kind: str, rngs: Sequence[torch.Generator], height: int, width: int,
               device: torch.device, decorrelate: bool = True,
               magnitude: torch.Tensor | None = None, decay_power: float = 1.0) -> Param:
    """A parametrization by name, "pixel", "fourier" or "maco" (which needs `magnitude`,
    (3, height, width//2+1)), for one image per generator."""
    if kind == "pixel":
        return PixelImage(rngs, height, width, device)
    if kind == "fourier":
        return FourierImage(rngs, height, width, device, decorrelate=decorrelate,
                            decay_power=decay_power)
    if kind == "maco":
        if magnitude is None:
            raise ValueError("the maco parametrization needs a magnitude spectrum")
        return MacoImage(rngs, height, width, device, magnitude, decorrelate)
    raise ValueError(f"unknown parametrization {kind!r}: use pixel or fourier (or maco, with "
                     "a magnitude spectrum)")


# How far inside (0, 1) a warm start puts an image's darkest and brightest pixels. The
# sigmoid's slope at a pixel of value p is p(1 - p): with the pixels clamped at 1e-4 from the
# bounds it was 1e-4 there, so no step Adam takes could move a black or white pixel, and a
# black-and-white silhouette's unit barely rose under accentuation (1.09 → 2.07, where photos
# rise tenfold). At 0.02 the slope is 0.0196, one twelfth of mid-gray's, and a saturated
# image loses at most 34 dB before the first step (5/255 per pixel).
WARM_START_INSET = 0.02


def logit(p: torch.Tensor, inset: float = 1e-4) -> torch.Tensor:
    """log(p / (1 - p)) of `p` clamped to [inset, 1 - inset]."""
    p = p.clamp(inset, 1 - inset)
    return torch.log(p) - torch.log1p(-p)


def fourier_from_image(image: torch.Tensor, decorrelate: bool = True,
                       decay_power: float = 1.0,
                       inset: float = WARM_START_INSET) -> torch.Tensor:
    """The spectrum whose `FourierImage` is `image` ((N, 3, H, W) in [0, 1]) with its pixels
    clamped `inset` inside the bounds, where the sigmoid still has a gradient: to warm-start."""
    _, _, h, w = image.shape
    x = logit(image, inset)
    if decorrelate:
        x = correlate_colors(x)
    return image_to_spectrum(x, spectrum_scale(h, w, decay_power).to(image.device))
