"""Class selectivity of units (Morcos et al. 2018) and the deletion orders built from it.

Pure numpy: the engine gathers activations, this turns them into indices and orders.

    selectivity = (μmax − μ−max) / (μmax + μ−max)

μmax is a unit's largest class-conditional mean activation, μ−max the mean of its other
class-conditional means. With non-negative activations (a layer after a ReLU) it lies in
[0, 1]: 0 when every class drives the unit equally, 1 when only one class drives it at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Selectivity:
    index: np.ndarray  # (C,) float64, in [0, 1]
    preferred: np.ndarray  # (C,) int, the class (label value) giving each unit's μmax
    classes: np.ndarray  # (K,) the label values, sorted
    class_means: np.ndarray  # (K, C) float64, mean activation per class and unit
    shifted: np.ndarray  # (C,) bool, units whose class means were shifted to be >= 0


def class_means(activations: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) activations and (N,) labels → (K,) sorted classes, (K, C) class-conditional means."""
    acts = np.asarray(activations, dtype=np.float64)
    labels = np.asarray(labels)
    if acts.ndim != 2 or labels.shape != (acts.shape[0],):
        raise ValueError(f"expected (N, C) activations and (N,) labels, got {acts.shape} "
                         f"and {labels.shape}")
    classes, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(classes), acts.shape[1]))
    np.add.at(sums, inverse, acts)
    counts = np.bincount(inverse, minlength=len(classes)).astype(np.float64)
    return classes, sums / counts[:, None]


def selectivity_index(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, C) class-conditional means, K ≥ 2 → (C,) selectivity index, (C,) shifted flags.

    A unit with a negative class mean (a layer that is not after a ReLU) has all its class
    means shifted by its smallest one, so that class reads 0 and the index stays in [0, 1];
    `shifted` says which units that was. A unit with every class mean 0 has index 0.
    """
    mu = np.asarray(means, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError("class selectivity needs the means of at least two classes")
    low = mu.min(axis=0)
    shifted = low < 0
    mu = mu - np.where(shifted, low, 0.0)[None, :]
    k = mu.shape[0]
    top = mu.max(axis=0)
    rest = (mu.sum(axis=0) - top) / (k - 1)
    denom = top + rest
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(denom > 0, (top - rest) / np.where(denom > 0, denom, 1.0), 0.0)
    return index, shifted


def class_selectivity(activations: np.ndarray, labels: np.ndarray) -> Selectivity:
    """Selectivity of every unit from (N, C) per-image activations and (N,) labels."""
    classes, means = class_means(activations, labels)
    index, shifted = selectivity_index(means)
    preferred = classes[means.argmax(axis=0)]
    return Selectivity(index, preferred, classes, means, shifted)


def deletion_counts(units: int, points: int) -> list[int]:
    """Units deleted at `points` evenly spaced fractions 0 … 1 of a layer of `units`."""
    if points < 2:
        raise ValueError("an ablation curve needs at least 2 points (0 % and 100 %)")
    return [round(units * i / (points - 1)) for i in range(points)]


def deletion_orders(index: np.ndarray, seeds: int) -> dict[str, np.ndarray]:
    """Unit orders: `random_<seed>` for each seed, `selectivity_high_to_low`, `…_low_to_high`.

    Ties in selectivity keep unit order (a stable sort), so the orders are reproducible.
    """
    idx = np.asarray(index, dtype=np.float64)
    orders = {f"random_{s}": np.random.default_rng(s).permutation(len(idx)) for s in range(seeds)}
    orders["selectivity_high_to_low"] = np.argsort(-idx, kind="stable")
    orders["selectivity_low_to_high"] = np.argsort(idx, kind="stable")
    return orders
