"""Magnitude spectra of natural images, for MACO (Fel et al. 2023).

MACO keeps an image's Fourier magnitude fixed at that of natural images and optimizes only
the phase. The magnitude is measured here, from images, never downloaded (horama fetches an
ImageNet spectrum at run time; xplique's `maco_dataset` measures one from a dataset, as we
do): the mean |rfft2| of square crops, in the decorrelated colour space the parametrization
works in (`param.COLOR_CORRELATION`), mirrored left-right (natural scenes have no preferred
horizontal direction, and it halves the noise of a small set).

- `image_spectrum(images, size)`: the spectrum of an iterable of RGB uint8 arrays.
- `bundled_spectrum()`: the one shipped beside this file (`spectrum.npz`, made from
  `assets/samples/*.jpg` by `scripts/make_spectrum.py`; a test recomputes it).
- `dataset_spectrum(folder, size, cache_dir)`: a job that measures a user's folder and keeps
  the result in the cache, keyed by the exact files, so a second call reads it back.
- `magnitude_at(spectrum, h, w)`: the magnitude resampled to another image size.

Files are plain .npz arrays (`magnitude`, `images`, `size`, `format`), loaded without
pickles. The magnitude's scale is irrelevant: the parametrization normalises it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from app.core.atomic import atomic_write_npz
from app.core.files import files_fingerprint, list_images
from app.core.jobs import Job, Progress

SPECTRUM_FORMAT = 1
DEFAULT_SIZE = 256  # the shipped spectrum's side; renders of other sizes resample it
BUNDLED_SPECTRUM = Path(__file__).with_name("spectrum.npz")
CROPS_PER_IMAGE = 3  # squares along a photo's long side (start, centre, end)


class SpectrumError(ValueError):
    """A spectrum file or dataset that cannot be used; the message names it."""


@dataclass(frozen=True)
class Spectrum:
    """Mean Fourier magnitude of natural images at `size`×`size`, decorrelated colour."""

    magnitude: np.ndarray  # (3, size, size // 2 + 1) float32, rfft2 layout (norm="ortho")
    images: int  # how many images it was measured on
    source: str = ""  # where it came from (a folder, a file, "bundled")

    @property
    def size(self) -> int:
        return int(self.magnitude.shape[1])

    def digest(self) -> str:
        """Names the magnitude exactly: renders made with another spectrum cache apart."""
        digest = hashlib.sha256(np.ascontiguousarray(self.magnitude, np.float32).tobytes())
        return digest.hexdigest()[:12]


def _decorrelation_matrix() -> np.ndarray:
    # the inverse of the colour map the parametrization applies (RGB = M · decorrelated)
    from app.engine.analyses.featurevis.param import COLOR_CORRELATION

    return np.linalg.inv(COLOR_CORRELATION.double().numpy())


def square_crops(image: np.ndarray, size: int, count: int = CROPS_PER_IMAGE
                 ) -> list[np.ndarray]:
    """`count` squares spread along the long side of (H, W, 3), each resized to size×size."""
    h, w = image.shape[:2]
    side = min(h, w)
    n = 1 if h == w else count
    spots = np.linspace(0, max(h, w) - side, n).round().astype(int)
    crops = []
    for s in spots:
        sq = image[s : s + side] if h > w else image[:, s : s + side]
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        crops.append(cv2.resize(np.ascontiguousarray(sq), (size, size), interpolation=interp))
    return crops


def _magnitude_of(crop: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """|rfft2| of one (S, S, 3) uint8 crop in decorrelated colour. → (3, S, S // 2 + 1)."""
    x = crop.astype(np.float64) / 255.0
    x = x - x.mean((0, 1))  # the mean colour carries no structure; MACO zeroes it anyway
    dec = np.einsum("ij,hwj->ihw", inverse, x)
    return np.abs(np.fft.rfft2(dec, norm="ortho"))


def mirror_average(magnitude: np.ndarray) -> np.ndarray:
    """Average with the left-right mirrored image's magnitude: for a real image that is the
    magnitude at the opposite vertical frequency, |X(-ky, kx)|. (3, H, W') → same."""
    flipped = np.roll(magnitude[:, ::-1], 1, axis=1)  # row k ← row (-k) mod H
    return 0.5 * (magnitude + flipped)


class SpectrumSum:
    """A running sum of magnitudes, one image at a time (no image is kept)."""

    def __init__(self, size: int) -> None:
        if size < 8:
            raise SpectrumError(f"spectrum size {size}: use at least 8 pixels")
        self.size = size
        self._inverse = _decorrelation_matrix()
        self._total = np.zeros((3, size, size // 2 + 1))
        self.images = self.crops = 0

    def add(self, image: np.ndarray) -> None:
        """Add the square crops of one (H, W, 3) uint8 RGB image."""
        self.images += 1
        for crop in square_crops(image, self.size):
            self._total += _magnitude_of(crop, self._inverse)
            self.crops += 1

    def spectrum(self, source: str = "") -> Spectrum:
        if not self.crops:
            where = f" in {source}" if source else ""
            raise SpectrumError(f"no images to measure a spectrum on{where}")
        mean = mirror_average(self._total / self.crops)
        return Spectrum(mean.astype(np.float32), self.images, source)


def image_spectrum(images: Iterable[np.ndarray], size: int = DEFAULT_SIZE,
                   source: str = "") -> Spectrum:
    """Mean magnitude spectrum of RGB uint8 images (H, W, 3), from square crops of each."""
    total = SpectrumSum(size)
    for image in images:
        total.add(image)
    return total.spectrum(source)


def save_spectrum(path: Path, spectrum: Spectrum, dtype: type = np.float32) -> Path:
    """Write `spectrum` as a plain .npz (atomically); float16 for the small shipped copy."""
    return atomic_write_npz(path, {
        "magnitude": spectrum.magnitude.astype(dtype),
        "images": np.array(spectrum.images), "size": np.array(spectrum.size),
        "format": np.array(SPECTRUM_FORMAT),
    })


def load_spectrum(path: Path) -> Spectrum:
    """A spectrum written by `save_spectrum` (no pickles); SpectrumError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as doc:
            fmt = int(doc["format"])
            magnitude = np.asarray(doc["magnitude"], np.float32)
            images = int(doc["images"])
    except (OSError, KeyError, ValueError) as exc:
        raise SpectrumError(f"{path}: not a spectrum file ({exc})".splitlines()[0]) from None
    if fmt != SPECTRUM_FORMAT:
        raise SpectrumError(f"{path}: spectrum format {fmt}, expected {SPECTRUM_FORMAT}")
    if magnitude.ndim != 3 or magnitude.shape[0] != 3 or \
            magnitude.shape[2] != magnitude.shape[1] // 2 + 1:
        raise SpectrumError(f"{path}: magnitude of shape {magnitude.shape} is no rfft2 layout")
    if not np.all(np.isfinite(magnitude)) or magnitude.min() < 0:
        raise SpectrumError(f"{path}: magnitude has negative or non-finite values")
    return Spectrum(magnitude, images, str(path))


def bundled_spectrum() -> Spectrum:
    """The spectrum shipped with the package, measured on the bundled sample photos."""
    spectrum = load_spectrum(BUNDLED_SPECTRUM)
    return Spectrum(spectrum.magnitude, spectrum.images, "bundled")


def magnitude_at(spectrum: Spectrum, height: int, width: int) -> torch.Tensor:
    """The magnitude resampled to an height×width image. → (3, height, width // 2 + 1).

    Resampled in frequency coordinates (cycles per pixel), with the vertical frequencies
    put in order first (fftshift), so the highest positive and negative ones stay apart;
    then made symmetric again where the rfft2 layout holds conjugate pairs (columns 0 and
    Nyquist), which MACO's phase symmetry needs to leave the magnitude exact.
    """
    m = torch.from_numpy(np.ascontiguousarray(spectrum.magnitude, np.float32))
    if m.shape[1:] != (height, width // 2 + 1):
        shifted = torch.fft.fftshift(m, dim=1)[None]
        small = height < m.shape[1] or width // 2 + 1 < m.shape[2]
        shifted = F.interpolate(shifted, size=(height, width // 2 + 1), mode="bilinear",
                                align_corners=False, antialias=small)[0]
        m = torch.fft.ifftshift(shifted, dim=1).clamp_min(0)
    cols = [0] + ([width // 2] if width % 2 == 0 else [])
    neg = (-torch.arange(height)) % height
    m = m.clone()
    m[:, :, cols] = 0.5 * (m[:, :, cols] + m[:, neg][:, :, cols])
    return m


@dataclass(frozen=True, kw_only=True)
class SpectrumProgress(Progress):
    """One image of a dataset measured."""


@dataclass(frozen=True)
class SpectrumResult:
    spectrum: Spectrum
    path: Path  # the cached .npz
    cached: bool  # read back from the cache, nothing measured
    skipped: tuple[str, ...] = ()  # files that could not be read


def spectrum_cache_path(cache_dir: Path, paths: list[str], size: int) -> Path:
    """Where the spectrum of exactly these files at `size` is kept."""
    key = files_fingerprint(paths, size, SPECTRUM_FORMAT, CROPS_PER_IMAGE)
    return Path(cache_dir) / "spectrum" / f"{key}-px{size}.npz"


def dataset_spectrum(folder: str | Path, size: int = DEFAULT_SIZE,
                     cache_dir: Path | None = None, max_pixels: int = 80_000_000
                     ) -> Job[SpectrumProgress, SpectrumResult]:
    """The spectrum of every image under `folder` (a job, one step per image), cached.

    `cache_dir`: the cache root (`app.engine.runtime.cache.cache_root`); None measures without
    keeping it (the result's path is then where it would have gone, relative). A cancelled
    job writes nothing.
    """
    from app.capture.images import ImageError, read_image

    paths = list_images(folder)
    if not paths:
        raise SpectrumError(f"{folder}: no images found")
    target = spectrum_cache_path(cache_dir if cache_dir is not None else Path("."), paths, size)
    if cache_dir is not None and target.is_file():
        try:
            hit = load_spectrum(target)
        except SpectrumError:
            hit = None  # a damaged cache entry is measured again
        if hit is not None and hit.size == size:
            yield SpectrumProgress(done=len(paths), total=len(paths), text="cached")
            return SpectrumResult(Spectrum(hit.magnitude, hit.images, str(folder)), target, True)
    total = SpectrumSum(size)
    skipped: list[str] = []
    for i, path in enumerate(paths):
        try:
            total.add(read_image(path, max_pixels))
        except ImageError:
            skipped.append(path)
        yield SpectrumProgress(done=i + 1, total=len(paths))
    if not total.images:
        raise SpectrumError(f"{folder}: none of its {len(paths)} images could be read")
    spectrum = total.spectrum(str(folder))
    if cache_dir is not None:
        save_spectrum(target, spectrum)
    return SpectrumResult(spectrum, target, False, tuple(skipped))
