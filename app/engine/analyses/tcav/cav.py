"""A concept activation vector: the direction that separates two sets of activations.

Two ways, both in torch on the activations' device:

- `logistic` (default): L2-regularized logistic regression, full batch, L-BFGS from zero
  (no random start: the same data give the same CAV, bit for bit on a CPU). The features
  are centred and divided by one number (their mean norm), which leaves the direction as
  it is in the layer's own coordinates while keeping the optimization well conditioned;
  the classes are weighted to count equally. The CAV is the unit weight vector, pointing
  to the concept.
- `mean`: FastCAV (Schmalwasser et al., ICML 2025), the normalized difference of the class
  means, mean(concept) − mean(random); it classifies by the side of the midpoint of the two
  means. No optimization at all: ~50× faster, and close to the regression's direction when
  the classes are roughly isotropic.

Either is trained on a seeded, stratified split (a third held out, as captum does) and its
accuracy on the held-out part is reported: a CAV that cannot separate the concept from
random images is no concept direction at that layer, whatever its scores say.

Stored CAVs: one pair of files per CAV, `<name>.npz` (the unit vector, float32) and
`<name>.json` (accuracy and what went in), tied by a random token and written atomically
(app.core.atomic), json last; read with `allow_pickle=False`. A pair that does not match
is ignored and refitted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.core.atomic import atomic_write_json, atomic_write_npz

METHODS = ("logistic", "mean")
TEST_FRACTION = 1 / 3
REGULARIZATION = 1e-2  # the L2 weight on the (centred, scaled) features' coefficients
LBFGS_ITERATIONS = 200


@dataclass(frozen=True)
class Cav:
    """A unit direction of a layer (C,) and its held-out accuracy."""

    vector: np.ndarray
    accuracy: float
    cached: bool = False


def split(n_pos: int, n_neg: int, seed: int, test_fraction: float = TEST_FRACTION
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, test) indices of each class: (pos_train, pos_test, neg_train, neg_test),
    seeded, at least one of each class in each part. Each class needs two samples."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for n in (n_pos, n_neg):
        if n < 2:
            raise ValueError("each set needs two readable images at least")
        order = rng.permutation(n)
        held = min(n - 1, max(1, round(test_fraction * n)))
        parts += [np.sort(order[held:]), np.sort(order[:held])]
    return parts[0], parts[1], parts[2], parts[3]


def fit_direction(pos: torch.Tensor, neg: torch.Tensor, method: str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit CAV (C,), threshold): concept rows of `pos` (n, C) against `neg` (m, C);
    a row x is classed as the concept when x · cav > threshold."""
    pos, neg = pos.float(), neg.float()
    if method == "mean":
        diff = pos.mean(0) - neg.mean(0)
        cav = diff / diff.norm().clamp_min(1e-12)
        middle = (pos.mean(0) + neg.mean(0)) / 2
        return cav, middle @ cav
    if method != "logistic":
        raise ValueError(f"unknown CAV method {method!r}")
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos), device=x.device), torch.zeros(len(neg), device=x.device)])
    weight = torch.cat([torch.full((len(pos),), 0.5 / len(pos), device=x.device),
                        torch.full((len(neg),), 0.5 / len(neg), device=x.device)])
    centre = x.mean(0)
    scale = (x - centre).norm(dim=1).mean().clamp_min(1e-12)
    xs = (x - centre) / scale
    w = torch.zeros(x.shape[1], device=x.device, requires_grad=True)
    b = torch.zeros((), device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xs @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, weight=weight, reduction="sum")
            + 0.5 * REGULARIZATION * w.square().sum())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_, b_ = w.detach(), b.detach()
    norm = w_.norm().clamp_min(1e-12)
    # xs·w + b > 0  ⇔  x·(w/|w|) > (centre·w − b·scale)/|w|
    return w_ / norm, (centre @ w_ - b_ * scale) / norm


def accuracy(cav: torch.Tensor, threshold: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
             ) -> float:
    right = int(((pos.float() @ cav) > threshold).sum()) + int(
        ((neg.float() @ cav) <= threshold).sum())
    return right / (len(pos) + len(neg))


def train_cav(pos: torch.Tensor, neg: torch.Tensor, method: str, seed: int) -> Cav:
    """The CAV of `pos` against `neg` trained on a seeded split, with its held-out accuracy."""
    parts = split(len(pos), len(neg), seed)  # (pos train, pos test, neg train, neg test)
    p_ix, n_ix = (torch.as_tensor(np.concatenate(parts[:2]), device=pos.device),
                  torch.as_tensor(np.concatenate(parts[2:]), device=neg.device))
    cav, threshold = fit_direction(pos[p_ix[:len(parts[0])]], neg[n_ix[:len(parts[2])]], method)
    acc = accuracy(cav, threshold, pos[p_ix[len(parts[0]):]], neg[n_ix[len(parts[2]):]])
    return Cav(cav.cpu().numpy().astype(np.float32), acc)


# -- the store --------------------------------------------------------------------------------


def save_cav(folder: Path, name: str, cav: Cav, doc: dict[str, Any]) -> None:
    token = os.urandom(8).hex()
    atomic_write_npz(folder / f"{name}.npz", {"cav": cav.vector, "token": np.array(token)})
    atomic_write_json(folder / f"{name}.json", {**doc, "accuracy": cav.accuracy,
                                                "token": token})


def load_cav(folder: Path, name: str, channels: int) -> Cav | None:
    try:
        doc = json.loads((folder / f"{name}.json").read_text())
        with np.load(folder / f"{name}.npz", allow_pickle=False) as z:
            if str(z["token"]) != doc.get("token"):
                return None
            vector = z["cav"]
        if vector.shape != (channels,) or not np.isfinite(vector).all():
            return None
        return Cav(vector.astype(np.float32), float(doc["accuracy"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
