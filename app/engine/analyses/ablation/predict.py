"""`deepvis predict --ablate`: the intact and the ablated network's top-k, side by side."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from app.core.messages import AblationMode, Prediction
from app.engine.analyses.ablation.deletion import Ablation, RunningChannelMeans
from app.engine.runtime.directions import DirectionLayer
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.predict import top_predictions
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch


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
    mode: AblationMode | str = AblationMode.ZERO,
    directions: Mapping[str, DirectionLayer] | None = None,
) -> list[AblatedPrediction]:
    """Intact and ablated top-k per (H, W, 3) uint8 image; `units` maps layers to channels.

    Mean ablation uses each unit's mean activation over all the given images (intact).
    `directions`: the direction layers (`L@nmf32`) among `units`' layers.
    """
    xs = [prepare_batch([frame_to_tensor(im, loaded.device)], loaded.preprocess)
          for im in images]
    model = loaded.module
    intact = []
    means = RunningChannelMeans()
    # one pass with the layers watched: intact outputs, and their means for mean mode
    with Ablation(model, {layer: () for layer in units}, mode=AblationMode.MEAN, means=means,
                  directions=directions):
        for x in xs:
            intact.append(model(x)[0].float())
    fixed = ({layer: m for layer in units if (m := means.mean(layer)) is not None}
             if mode == AblationMode.MEAN else None)
    out: list[AblatedPrediction] = []
    names = loaded.class_names
    with Ablation(model, units, mode=mode, means=fixed, directions=directions):
        for x, logits0 in zip(xs, intact, strict=True):
            logits1 = model(x)[0].float()
            first = int(logits0.argmax())
            out.append(AblatedPrediction(top_predictions(logits0, top_k, names),
                                         top_predictions(logits1, top_k, names),
                                         float(torch.softmax(logits1, 0)[first])))
    return out
