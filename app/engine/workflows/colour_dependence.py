"""Colour or shape? (deep-visualization-toolbox #55): how much of a unit's response is colour.

A unit's colour dependence is its mean top activation over the scanned folder with the images
in grayscale, divided by the same in colour: for each of the unit's top-k entries of a scan,
the source image is read and prepared exactly as the scan prepared it (downscaled to the
scan's `max_side`, then the model's crop and resize), once more in grayscale (its BT.601
luminance in all three channels, as the live view's grayscale input), and the unit's maximum
over its map is taken. 1 means colour changes nothing, near 0 that the unit responds to
colour alone; a gray folder gives exactly 1. It costs k forward passes to the layer on a
private copy of the model, so it is made when the unit card is shown.
"""

from __future__ import annotations

import numpy as np
import torch

from app.capture.images import ImageError, downscale_to, read_image
from app.core.messages import ColourDependence
from app.core.scan_results import ScanResult
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import prepare_batch
from app.engine.runtime.truncate import forward_to

DEFAULT_MAX_SIDE = 1280  # scans made before the side was recorded used this
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as OpenCV's RGB→gray


def colour_dependence(loaded: LoadedModel, scan: ScanResult, unit: int,
                      max_pixels: int = 80_000_000) -> ColourDependence | None:
    """The unit's colour dependence over its top entries (None: no entry could be read).

    `loaded` must be a private copy: the forwards run on this thread, off the live model."""
    grays, colours = [], []
    side = int(scan.meta.get("max_side", DEFAULT_MAX_SIDE))
    for entry in scan.top(unit):
        try:
            image = downscale_to(read_image(entry.path, max_pixels), side)
        except ImageError:  # moved or changed since the scan: leave it out
            continue
        luma = np.rint(image.astype(np.float32) @ LUMA).clip(0, 255).astype(np.uint8)
        gray = np.repeat(luma[..., None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(gray)).permute(2, 0, 1)
        x = prepare_batch([t], loaded.preprocess).to(loaded.device)
        with torch.no_grad():
            acts = forward_to(loaded.module, scan.layer, x)
        grays.append(float(acts[0, unit].float().max()))
        colours.append(entry.value)
    if not colours:
        return None
    colour = float(np.mean(colours))
    ratio = float(np.mean(grays)) / colour if abs(colour) > 1e-9 else float("nan")
    return ColourDependence(scan.layer, unit, ratio, len(colours))
