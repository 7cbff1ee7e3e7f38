"""Batch classification of still images, with the same preprocessing as the live view."""

from __future__ import annotations

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
