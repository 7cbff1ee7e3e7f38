"""The activation grid of Building Blocks (Olah et al. 2018), and direction icons.

At every position of the layer, the preferred image of that position's whole activation
vector (lucid's `direction` objective), all positions optimized in one batch, laid out on
the frame's grid and darkened where the activation is weak, as in the article: a picture
of what the layer sees where. A layer finer than 16×16 is pooled to 16×16 first, so the
batch stays a few hundred small images.

Direction icons are the same objective for the neuron groups' (k, C) channel factors,
rendered once and cached as PNGs under the model's cache folder.

Both compose the renderer with a frame's (or a factorization's) vectors, which no single
analysis package owns: so they live here, and the session only turns them into messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from app.core.atomic import atomic_write_bytes
from app.core.files import safe_filename
from app.core.jobs import Job, Progress
from app.engine.analyses.featurevis import Renderer, get_preset
from app.engine.analyses.featurevis import objectives as obj
from app.engine.analyses.featurevis.frames import frame_batch
from app.engine.analyses.featurevis.render import Ascent, image_seed, to_uint8
from app.engine.analyses.featurevis.render_cache import encode_png, read_png
from app.engine.runtime.models import LoadedModel

MAX_SIDE = 16  # positions per side at most
TILE = 48  # pixels per position
STEPS = 48
ICON = 64  # group icons' side


@dataclass(frozen=True, eq=False)
class GridPicture:
    """The activation grid so far (a preview) or at the end: (rows·S, cols·S, 3) uint8."""

    image: np.ndarray
    rows: int
    cols: int
    step: int
    steps: int


def grid_vectors(acts: torch.Tensor) -> torch.Tensor:
    """(C, H, W) activations → (h·w, C) vectors, pooled to at most MAX_SIDE per side."""
    h, w = acts.shape[1:]
    if max(h, w) > MAX_SIDE:
        acts = F.adaptive_avg_pool2d(acts[None], (min(h, MAX_SIDE), min(w, MAX_SIDE)))[0]
    return acts.flatten(1).t().contiguous()


def lay_out(images: np.ndarray, norms: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(h·w, S, S, 3) uint8 tiles → one (h·S, w·S, 3) picture, each tile darkened by how
    weak its position's activation is (a quarter of its brightness at zero)."""
    s = images.shape[1]
    weight = 0.25 + 0.75 * (norms / max(float(norms.max()), 1e-9))
    shaded = (images.astype(np.float32) * weight[:, None, None, None]).astype(np.uint8)
    return shaded.reshape(rows, cols, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(
        rows * s, cols * s, 3)


def activation_grid(loaded: LoadedModel, image: np.ndarray, layer: str, preset: str,
                    seed: int) -> Job[Progress, GridPicture]:
    """The activation grid of `layer` for a (H, W, 3) uint8 frame; each step that has a new
    picture carries it as its `preview` (a `GridPicture`)."""
    r = Renderer(loaded, layer)
    x = frame_batch(image, loaded.preprocess.size, loaded.preprocess.crop_fraction, r.device)
    with torch.no_grad():
        acts = r.forward(x)[0].float()
    if acts.dim() != 3:
        raise ValueError(f"{layer} has no positions: pick a layer with a map")
    _, h, w = acts.shape
    rows, cols = min(h, MAX_SIDE), min(w, MAX_SIDE)
    vectors = grid_vectors(acts)
    norms = vectors.norm(dim=1).cpu().numpy()
    p = get_preset(preset).with_overrides(STEPS, TILE)
    rngs = [torch.Generator().manual_seed(image_seed(seed, i)) for i in range(len(vectors))]
    param = r.make_param(p, rngs)
    picture = lay_out(to_uint8(param().detach()), norms, rows, cols)
    for step, images, _ in Ascent(r, param, obj.direction(vectors), p, rngs).run():
        shown = None
        if images is not None:
            picture = lay_out(images, norms, rows, cols)
            shown = GridPicture(picture, rows, cols, step, p.steps)
        yield Progress(step, p.steps, f"activation grid of {layer}", preview=shown)
    return GridPicture(picture, rows, cols, p.steps, p.steps)


def direction_key(layer: str, direction: np.ndarray) -> str:
    """A file name for a direction's render: the layer and the vector, rounded to 3 digits
    (a warm-started group moves by less between frames, and its picture would not change)."""
    rounded = np.round(np.asarray(direction, np.float64) / max(float(np.abs(direction).max()),
                                                               1e-12), 3)
    digest = hashlib.sha256(rounded.tobytes()).hexdigest()[:16]
    return f"{safe_filename(layer)}-{digest}"


def direction_icons(loaded: LoadedModel, layer: str, directions: np.ndarray, preset: str,
                    seed: int, folder: Path
                    ) -> Job[Progress, tuple[tuple[str, ...], tuple[np.ndarray, ...], int]]:
    """The preferred image of each (k, C) direction, made once and cached in `folder`:
    (keys, icons, how many were rendered now)."""
    keys = [direction_key(layer, d) for d in directions]
    icons: list[np.ndarray | None] = []
    for key in keys:
        cached = read_png(folder / f"{key}.png")
        icons.append(None if cached is None else cv2.cvtColor(cached, cv2.COLOR_BGR2RGB))
    missing = [i for i, icon in enumerate(icons) if icon is None]
    if missing:
        r = Renderer(loaded, layer)
        p = get_preset(preset).with_overrides(STEPS, ICON)
        rngs = [torch.Generator().manual_seed(image_seed(seed, i)) for i in missing]
        param = r.make_param(p, rngs)
        vectors = torch.as_tensor(directions[missing], dtype=torch.float32)
        images = to_uint8(param().detach())
        for step, shown, _ in Ascent(r, param, obj.direction(vectors), p, rngs).run():
            if shown is not None:
                images = shown
            yield Progress(step, p.steps, f"icons of {len(missing)} neuron groups of {layer}")
        for j, i in enumerate(missing):
            icons[i] = images[j]
            atomic_write_bytes(folder / f"{keys[i]}.png", encode_png(images[j]))
    return tuple(keys), tuple(i for i in icons if i is not None), len(missing)
