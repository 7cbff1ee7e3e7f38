"""Batch classification of still images, with the same preprocessing as the live view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.core.messages import Prediction
from app.engine.models import LoadedModel
from app.engine.preprocess import frame_to_tensor, prepare_batch


@torch.no_grad()
def predict_images(
    loaded: LoadedModel, images: list[np.ndarray], top_k: int = 5
) -> list[tuple[Prediction, ...]]:
    """Top-k classes for each (H, W, 3) uint8 RGB image."""
    out: list[tuple[Prediction, ...]] = []
    for image in images:
        x = prepare_batch([frame_to_tensor(image, loaded.device)], loaded.preprocess)
        probs = torch.softmax(loaded.module(x)[0].float(), 0)
        p, i = probs.topk(min(top_k, probs.numel()))
        names = loaded.class_names
        out.append(tuple(Prediction(int(k), names[int(k)], float(v))
                         for v, k in zip(p.tolist(), i.tolist(), strict=True)))
    return out


def _top(probs: torch.Tensor, k: int, names: tuple[str, ...]) -> tuple[Prediction, ...]:
    p, i = probs.topk(min(k, probs.numel()))
    return tuple(Prediction(int(j), names[int(j)] if int(j) < len(names) else str(int(j)),
                            float(v)) for v, j in zip(p.tolist(), i.tolist(), strict=True))


@dataclass(frozen=True)
class AblatedPrediction:
    """Top-k of the intact and of the ablated network for one image."""

    intact: tuple[Prediction, ...]
    ablated: tuple[Prediction, ...]
    intact_top1_after: float  # the ablated network's probability for the intact top-1 class


@torch.no_grad()
def predict_ablated(
    loaded: LoadedModel,
    images: list[np.ndarray],
    units: dict[str, list[int]],
    top_k: int = 5,
    mode: str = "zero",
) -> list[AblatedPrediction]:
    """Intact and ablated top-k per (H, W, 3) uint8 image; `units` maps layers to channels.

    Mean ablation uses each unit's mean activation over all the given images (intact).
    """
    from app.engine.ablation import Ablation, RunningChannelMeans

    xs = [prepare_batch([frame_to_tensor(im, loaded.device)], loaded.preprocess)
          for im in images]
    model = loaded.module
    intact = []
    means = RunningChannelMeans()
    # one pass with the layers watched: intact outputs, and their means for mean mode
    with Ablation(model, {layer: () for layer in units}, mode="mean", means=means):
        for x in xs:
            intact.append(torch.softmax(model(x)[0].float(), 0))
    fixed = {layer: means.mean(layer) for layer in units} if mode == "mean" else None
    out: list[AblatedPrediction] = []
    names = loaded.class_names
    with Ablation(model, units, mode=mode, means=fixed):
        for x, p0 in zip(xs, intact, strict=True):
            p1 = torch.softmax(model(x)[0].float(), 0)
            first = int(p0.argmax())
            out.append(AblatedPrediction(_top(p0, top_k, names), _top(p1, top_k, names),
                                         float(p1[first])))
    return out
