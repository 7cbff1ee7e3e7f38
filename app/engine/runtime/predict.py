"""Classification of still images, with the same preprocessing as the live view."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from app.core.messages import Prediction
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch


def top_predictions(logits: torch.Tensor, k: int, names: Sequence[str]) -> tuple[Prediction, ...]:
    """One image's (K,) logits → its `k` most probable classes, softmax probabilities."""
    probs = torch.softmax(logits.float(), 0)
    p, i = probs.topk(min(k, probs.numel()))
    return tuple(Prediction(int(j), names[int(j)] if int(j) < len(names) else str(int(j)),
                            float(v)) for v, j in zip(p.tolist(), i.tolist(), strict=True))


@torch.no_grad()
def predict_images(
    loaded: LoadedModel, images: list[np.ndarray], top_k: int = 5
) -> list[tuple[Prediction, ...]]:
    """Top-k classes for each (H, W, 3) uint8 RGB image."""
    out: list[tuple[Prediction, ...]] = []
    for image in images:
        x = prepare_batch([frame_to_tensor(image, loaded.device)], loaded.preprocess)
        out.append(top_predictions(loaded.module(x)[0], top_k, loaded.class_names))
    return out
