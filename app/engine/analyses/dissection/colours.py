"""Pixel-level colour concepts for folders with no labels: the eleven basic colour terms.

Broden's colour category was made automatically, every pixel named by its most likely
basic colour term (van de Weijer et al. 2009, whose 32 768-entry table we do not ship).
Here a pixel gets the nearest of the eleven Berlin–Kay focal colours in CIE L*a*b*
(CIE76 distance): the same eleven terms, computed from the pixels alone, with no data
file. Pure numpy, so the loader's worker processes run it beside the decoding.
"""

from __future__ import annotations

import numpy as np

# sRGB renderings of the focal colours (the Munsell chips most people pick for each term,
# Sturges & Whitfield 1995), in Broden's order of the eleven names
COLOUR_NAMES: tuple[str, ...] = (
    "black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red", "white",
    "yellow",
)
_FOCAL_RGB = np.array([
    [20, 20, 20],      # black
    [30, 75, 185],     # blue
    [115, 70, 35],     # brown
    [128, 128, 128],   # grey
    [35, 140, 60],     # green
    [240, 130, 25],    # orange
    [240, 160, 190],   # pink
    [115, 45, 145],    # purple
    [200, 25, 35],     # red
    [245, 245, 245],   # white
    [245, 215, 30],    # yellow
], dtype=np.uint8)

_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB → (..., 3) float32 CIE L*a*b* (D65)."""
    c = np.asarray(rgb, np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T.astype(np.float32) / _WHITE_D65.astype(np.float32)
    eps = 216 / 24389
    f = np.where(xyz > eps, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                    200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


_FOCAL_LAB = rgb_to_lab(_FOCAL_RGB)


def colour_index(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W) int: index into `COLOUR_NAMES` of each pixel's colour
    (the nearest focal colour; the first of equals).

    One focal colour at a time over whole planes: the squared distance summed in the order
    numpy sums a length-3 axis, ((ΔL² + Δa²) + Δb²) in float32, so the same numbers as
    `((lab[..., None, :] - focal) ** 2).sum(-1).argmin(-1)` (every one of the 2^24 colours
    checked) at a fifth of the time: summing 3-long rows was most of a dissection loader's
    work."""
    lab = rgb_to_lab(rgb)
    planes = [np.ascontiguousarray(lab[..., i]) for i in range(3)]
    best = np.full(lab.shape[:-1], np.inf, np.float32)
    index = np.zeros(lab.shape[:-1], np.int64)
    for k, focal in enumerate(_FOCAL_LAB):
        d = np.zeros_like(best)
        for plane, value in zip(planes, focal, strict=True):
            delta = plane - value
            d += delta * delta
        closer = d < best
        best = np.where(closer, d, best)
        index[closer] = k
    return index


def focal_rgb(name: str) -> tuple[int, int, int]:
    """The sRGB rendering of a colour term's focal colour (for tests and drawings)."""
    r, g, b = _FOCAL_RGB[COLOUR_NAMES.index(name)]
    return int(r), int(g), int(b)
