"""Finished preferred images on disk, so a unit rendered once shows at once the next time.

Layout: `<cache root>/<model key>/render/<layer>/<preset>-<objective>-s<steps>-px<size>-seed<seed>/`
holding `unit00012.png` (the image) and `unit00012.json` (its activation), and for presets
that keep a transparency map, `unit00012-alpha.png` (8-bit). The model key names the weights
and the preprocessing, so another checkpoint never sees these files. Every file is written
atomically, the JSON last: an entry counts only once its JSON exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.core.atomic import atomic_write_bytes, atomic_write_json
from app.core.files import safe_filename

RENDER_CACHE_FORMAT = 1


@dataclass(frozen=True)
class RenderKey:
    """Everything a cached image depends on, besides the unit."""

    model_key: str  # app.engine.runtime.cache.model_key(loaded)
    layer: str
    preset: str
    steps: int
    size: int
    seed: int
    objective: str = "channel"
    variant: str = ""  # what else the image depends on (MACO: the spectrum's digest)

    def folder(self, root: Path) -> Path:
        run = (f"{safe_filename(self.preset)}-{safe_filename(self.objective)}"
               f"-s{self.steps}-px{self.size}-seed{self.seed}")
        if self.variant:
            run += f"-{safe_filename(self.variant)}"
        return Path(root) / self.model_key / "render" / safe_filename(self.layer) / run


def _paths(root: Path, key: RenderKey, unit: int) -> tuple[Path, Path]:
    folder = key.folder(root)
    return folder / f"unit{unit:05d}.png", folder / f"unit{unit:05d}.json"


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB → PNG bytes."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB image
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def store_render(root: Path, key: RenderKey, unit: int, image: np.ndarray,
                 activation: float) -> Path:
    """Write a finished image (H, W, 3) uint8 and its activation; returns the PNG's path."""
    png, meta = _paths(root, key, unit)
    atomic_write_bytes(png, encode_png(image))
    atomic_write_json(meta, {"format": RENDER_CACHE_FORMAT, "unit": unit,
                             "activation": float(activation)})
    return png


def store_alpha(root: Path, key: RenderKey, unit: int, alpha: np.ndarray) -> Path:
    """Write a transparency map (H, W) in [0, 1] as an 8-bit gray PNG; store it before
    `store_render`, whose JSON marks the entry complete."""
    png = _paths(root, key, unit)[0].with_name(f"unit{unit:05d}-alpha.png")
    a = np.clip(np.asarray(alpha, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", a)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 gray image
        raise ValueError("PNG encoding failed")
    return atomic_write_bytes(png, buf.tobytes())


def read_png(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """A cached image as OpenCV decodes it with `flags` ((H, W, 3) BGR by default), or None
    when there is none or it cannot be decoded.

    A cache is probed for files that are often absent: `cv2.imread` warns on stderr of each
    one it cannot open, so the file is read here and only its bytes handed to OpenCV.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        return None


def cached_alpha(root: Path, key: RenderKey, unit: int) -> np.ndarray | None:
    """(H, W) float32 in [0, 1], the transparency map of a cached render, or None."""
    png = _paths(root, key, unit)[0].with_name(f"unit{unit:05d}-alpha.png")
    gray = read_png(png, cv2.IMREAD_GRAYSCALE)
    return None if gray is None else gray.astype(np.float32) / 255.0


def cached_render(root: Path, key: RenderKey, unit: int) -> tuple[np.ndarray, float] | None:
    """(image (H, W, 3) uint8 RGB, activation) of a finished render, or None."""
    png, meta = _paths(root, key, unit)
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
        if doc.get("format") != RENDER_CACHE_FORMAT:
            return None
    except (OSError, ValueError):
        return None
    bgr = read_png(png)
    if bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), float(doc["activation"])
