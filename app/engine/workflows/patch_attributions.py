"""The attribution of each top patch: the toolbox's "deconv of the top 9", cached with the scan.

For each of a unit's top-k entries the source image is read and prepared exactly as the
scan prepared it (downscaled to the scan's `max_side`, then the model's crop and resize),
the unit is attributed at the very position the scan recorded (guided backprop: the
clearest of the three rules to look at), and the signed signal inside the entry's model
box is drawn as an image (`signal_to_rgb`) and letterboxed to the scan's crop size, so
it lies pixel for pixel beside the crop it explains.

The images live in the scan's own layer folder (`attributions/UNIT.npz`), stamped with the
scan's token: a rescan writes a new token, and older attributions are then ignored and
recomputed, never shown beside crops they do not belong to. Each file is written
atomically; a unit costs k forward-backward passes (k = 9 by default), so they are made
when a unit is first looked at (the unit card, the catalogue), not for a whole layer up
front.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from app.capture.images import ImageError, downscale_to, read_image
from app.core.atomic import atomic_write_npz
from app.core.jobs import Job, Progress
from app.core.messages import AttributionMode
from app.core.scan_results import ScanResult
from app.engine.analyses.attribution import Attributor, signal_to_rgb
from app.engine.analyses.patches.crops import letterbox
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import prepare_batch

PATCH_RULE = AttributionMode.GUIDED
DEFAULT_MAX_SIDE = 1280  # scans made before the side was recorded used this
FOLDER = "attributions"


def attribution_file(scan: ScanResult, unit: int) -> Path:
    return scan.folder / FOLDER / f"{int(unit)}.npz"


def cached_patch_attributions(scan: ScanResult, unit: int) -> np.ndarray | None:
    """(n, S, S, 3) uint8 beside `scan.unit_crops(unit)`, or None when not made (or stale)."""
    try:
        with np.load(attribution_file(scan, unit)) as z:
            if str(z["token"]) != scan.meta.get("token") or str(z["rule"]) != PATCH_RULE:
                return None
            images = np.asarray(z["images"])
    except (OSError, ValueError, KeyError):
        return None
    return images if len(images) == len(scan.top(unit)) else None


def patch_attributions(loaded: LoadedModel, scan: ScanResult, unit: int,
                       attributor: Attributor | None = None,
                       max_pixels: int = 80_000_000) -> np.ndarray:
    """(n, S, S, 3) uint8: the cached attributions of `unit`'s top patches, or made now."""
    hit = cached_patch_attributions(scan, unit)
    if hit is not None:
        return hit
    attributor = attributor or Attributor(loaded, PATCH_RULE)
    side = int(scan.meta.get("crop_size", 0)) or 1
    made = [_entry_attribution(loaded, scan, attributor, unit, rank, side, max_pixels)
            for rank in range(len(scan.top(unit)))]
    images = np.stack(made) if made else np.zeros((0, side, side, 3), np.uint8)
    atomic_write_npz(attribution_file(scan, unit), {
        "token": np.array(str(scan.meta.get("token"))), "rule": np.array(str(PATCH_RULE)),
        "images": images})
    return images


def patch_attributions_job(loaded: LoadedModel, scan: ScanResult, units: Sequence[int],
                           max_pixels: int = 80_000_000
                           ) -> Job[Progress, dict[int, np.ndarray]]:
    """The attributions of the top patches of `units` (a job: one step per unit)."""
    attributor = Attributor(loaded, PATCH_RULE)
    out: dict[int, np.ndarray] = {}
    for i, unit in enumerate(units):
        yield Progress(i, len(units), f"attributing the top patches of unit {unit}")
        out[int(unit)] = patch_attributions(loaded, scan, int(unit), attributor, max_pixels)
    yield Progress(len(units), len(units), "top patches attributed")
    return out


def _entry_attribution(loaded: LoadedModel, scan: ScanResult, attributor: Attributor,
                       unit: int, rank: int, side: int, max_pixels: int) -> np.ndarray:
    """One entry's attribution image, (side, side, 3) uint8; mid grey when its file is gone."""
    entry = scan.top(unit)[rank]
    try:
        image = read_image(entry.path, max_pixels)
    except ImageError:  # moved or changed since the scan: say nothing rather than lie
        return np.full((side, side, 3), 128, np.uint8)
    image = downscale_to(image, int(scan.meta.get("max_side", DEFAULT_MAX_SIDE)))
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    x = prepare_batch([t], loaded.preprocess).to(loaded.device)
    signal, _, _ = attributor.input_signal(x, scan.layer, unit, (entry.y, entry.x))
    rgb = signal_to_rgb(signal.float().cpu().numpy())
    h, w = rgb.shape[:2]
    y0, x0, y1, x1 = entry.model_box
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    return letterbox(rgb[y0:y1, x0:x1], side)
