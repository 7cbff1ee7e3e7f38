"""Does the attribution mean something? Delete the channels it ranks first and look.

For k in (1, 5, 10): the class's probability with the k channels of highest attribution
zeroed at the layer, against k channels drawn at random (the mean over several seeds). An
attribution that tracks what the network uses drops the probability far more than chance; one
that does not, does not. All deletion sets of one image run in one batch made at the layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.engine.analyses.blocks.layer_attribution import LayerAttributor

DEFAULT_KS = (1, 5, 10)
DEFAULT_SEEDS = 5


@dataclass(frozen=True)
class Faithfulness:
    """Class probability intact, with the top-k attributed channels and k random ones zeroed."""

    target: int
    ks: tuple[int, ...]
    intact: float
    top_deleted: tuple[float, ...]  # per k
    random_deleted: tuple[float, ...]  # per k, mean over seeds
    random_std: tuple[float, ...]  # per k, standard deviation over seeds
    seeds: int
    top_units: tuple[int, ...]  # the channels deleted for the largest k, in rank order


def faithfulness(attributor: LayerAttributor, x: torch.Tensor, layer: str, target: int,
                 channels: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                 seeds: int = DEFAULT_SEEDS, seed: int = 0) -> Faithfulness:
    """Deletion test of a (C,) channel attribution for a (1, 3, H, W) input and a class.

    k larger than C is clipped to C; random sets for seed s come from
    `np.random.default_rng(seed + s)`, drawn without replacement.
    """
    c = int(np.asarray(channels).shape[0])
    kept = tuple(min(int(k), c) for k in ks)
    if not kept or min(kept) < 1 or seeds < 1:
        raise ValueError("faithfulness needs positive k and at least one seed")
    ranked = np.argsort(-np.asarray(channels, np.float64), kind="stable")
    sets: list[list[int]] = [[]]
    sets += [ranked[:k].tolist() for k in kept]
    for s in range(seeds):
        rng = np.random.default_rng(seed + s)
        sets += [sorted(rng.choice(c, size=k, replace=False).tolist()) for k in kept]
    p = attributor.deleted_probabilities(x, layer, target, sets).astype(np.float64)
    n = len(kept)
    rand = p[1 + n:].reshape(seeds, n)
    return Faithfulness(
        target, kept, float(p[0]), tuple(float(v) for v in p[1:1 + n]),
        tuple(float(v) for v in rand.mean(0)), tuple(float(v) for v in rand.std(0)),
        seeds, tuple(int(u) for u in ranked[:max(kept)]))
