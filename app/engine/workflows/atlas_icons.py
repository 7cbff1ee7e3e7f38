"""The atlas's icons: each cell's feature visualisation, with the app's renderer, cached.

Rendering is the featurevis analysis and the atlas another, and analyses do not import each
other, so the two meet here, for the command and the window's job alike.

The objective is, at every position of the layer, dot(a, w) · max(cos(a, w), 0)^p,
averaged: the article's direction-with-cosine, on the whitened direction w = S d with
S = (AᵀA/n + εI)⁻¹ the inverse of the collected samples' second moments (Lucid's atlas
notebooks, `direction_neuron_cossim_S`). Whitening turns the icon away from what every
activation of the layer has in common (the large shared components that the raw mean of a
cell is mostly made of) towards what sets the cell apart; ε, a thousandth of the mean
second moment, keeps the inverse of a layer with more channels than its samples span
finite. With the "fast" preset at `steps` steps and `size` px, `ICON_BATCH` cells per
ascent. The icons are kept in the atlas's `icons/` with the settings that made them
(`write_icons`; its settings.json is written after the icons and cells.json), so an
unchanged rerun renders nothing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from app.core.atomic import atomic_write_json
from app.core.jobs import Job, Progress
from app.engine.analyses.atlas import Atlas, write_picture
from app.engine.analyses.featurevis import get_preset
from app.engine.analyses.featurevis import objectives as obj
from app.engine.analyses.featurevis.objectives import Objective
from app.engine.analyses.featurevis.render import Ascent, Renderer
from app.engine.runtime.models import LoadedModel

ICON_COSINE_POWER = 1.0  # the article's recipe: dot × cosine^p, so the icon turns towards it
ICON_BATCH = 8
ICON_STEPS = 128  # the command's defaults, so the window reuses what it rendered
ICON_SIZE = 96


WHITENING_RIDGE = 1e-3  # ε as a fraction of the mean second moment (module doc)


def icon_settings(atlas: Atlas, steps: int, size: int, seed: int) -> dict[str, Any]:
    return {"steps": steps, "size": size, "seed": seed, "power": ICON_COSINE_POWER,
            "cells": len(atlas.cells), "whitened": WHITENING_RIDGE}


def whitened(directions: np.ndarray, samples: np.ndarray,
             ridge: float = WHITENING_RIDGE) -> np.ndarray:
    """(M, C) directions S d with S the regularized inverse second-moment matrix of the
    (n, C) samples (module doc), each scaled to the norm of its d."""
    a = samples.astype(np.float64)
    moments = a.T @ a / max(len(a), 1)
    eps = ridge * float(np.trace(moments)) / max(moments.shape[0], 1) or ridge
    w = np.linalg.solve(moments + eps * np.eye(moments.shape[0]), directions.T.astype(
        np.float64)).T
    scale = np.linalg.norm(directions, axis=1) / np.maximum(np.linalg.norm(w, axis=1), 1e-30)
    return (w * scale[:, None]).astype(np.float32)


def stored_icons(atlas: Atlas, settings: dict[str, Any] | None = None
                 ) -> dict[int, np.ndarray] | None:
    """The icons a run with `settings` (None: any) left beside the atlas, or None."""
    import cv2

    try:
        found = json.loads((atlas.folder / "icons" / "settings.json").read_text())
        if settings is not None and found != settings:
            return None
        icons = {}
        for i, cell in enumerate(json.loads((atlas.folder / "cells.json").read_text())):
            bgr = cv2.imread(str(atlas.folder / str(cell["icon"])))
            if bgr is None:
                return None
            icons[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return icons if len(icons) == len(atlas.cells) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def render_icons(loaded: LoadedModel, atlas: Atlas, steps: int = ICON_STEPS,
                 size: int = ICON_SIZE, seed: int = 0) -> Job[Progress, dict[int, np.ndarray]]:
    """Each cell's icon (module doc): the stored ones when the settings match, else
    rendered, one step per batch of cells."""
    stored = stored_icons(atlas, icon_settings(atlas, steps, size, seed))
    if stored is not None:
        return stored
    p = get_preset("fast").with_overrides(steps, size)
    goals = whitened(atlas.directions, atlas.samples)
    renderer = Renderer(loaded, atlas.layer)
    icons: dict[int, np.ndarray] = {}
    try:
        yield Progress(0, len(atlas.cells), "icons")
        for start in range(0, len(atlas.cells), ICON_BATCH):
            ids = list(range(start, min(start + ICON_BATCH, len(atlas.cells))))
            k = max(1, p.crops)
            vecs = torch.from_numpy(np.repeat(goals[ids], k, axis=0))
            goal = obj.crop_mean(cosine_direction(vecs, ICON_COSINE_POWER), k)
            if p.tv_weight:
                goal = goal - p.tv_weight * obj.tv()
            rngs = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in ids]
            last = None
            for _step, images, _values in Ascent(renderer, renderer.make_param(p, rngs), goal,
                                                 p, rngs).run():
                if images is not None:
                    last = images
            assert last is not None
            icons.update({i: last[j] for j, i in enumerate(ids)})
            yield Progress(ids[-1] + 1, len(atlas.cells), "icons")
    finally:
        renderer.release()
    return icons


def write_icons(atlas: Atlas, icons: dict[int, np.ndarray], steps: int = ICON_STEPS,
                size: int = ICON_SIZE, seed: int = 0) -> None:
    """atlas.png, the icons and cells.json naming them, then the settings that made them."""
    write_picture(atlas.folder, atlas.cells, atlas.grid, icons)
    if icons:
        atomic_write_json(atlas.folder / "icons" / "settings.json",
                          icon_settings(atlas, steps, size, seed))


def cosine_direction(vecs: torch.Tensor, power: float) -> Objective:
    """Per image n: mean over positions of dot(a, d_n) · max(cos(a, d_n), 0)^power."""

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        v = vecs.to(acts.device, acts.dtype)
        if acts.dim() == 2:
            acts = acts[:, :, None, None]
        dot = torch.einsum("nchw,nc->nhw", acts, v)
        cos = dot / (acts.norm(dim=1) * v.norm(dim=1)[:, None, None]).clamp_min(1e-8)
        return (dot * cos.clamp_min(1e-6) ** power).flatten(1).mean(1)

    return Objective(fn, f"cosine_direction({tuple(vecs.shape)}, {power})")
