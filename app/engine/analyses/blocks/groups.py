"""Neuron groups: a layer's activations for one image split into k parts by NMF.

Building Blocks factorizes the (positions × channels) activation matrix V ≈ S·D with
non-negative factors (lucid's ChannelReducer wraps scikit-learn's NMF): each of k groups
(6 by default) is a direction D_g in channel space and a map S_g of where it is present.
Groups read better than single units because a layer's concepts are rarely one channel each.

Our own small solver, because the live view factorizes every frame: HALS (hierarchical
alternating least squares, Cichocki & Phan 2009) updates one factor row or column at a time
in closed form, and converges in tens of iterations where multiplicative updates need
hundreds. The start is deterministic (NNDSVDa, from the SVD of V) or, in the live view, the
previous frame's factors (`warm`), which keeps the groups — and their colours — in the same
order from frame to frame and converges in a few iterations. The iteration count is fixed;
`tol` stops early once the error stops moving, and `budget_s` caps the time per frame (the
one input that makes a result depend on the machine).

NMF needs V ≥ 0. A signed layer (a linear bottleneck, a batch norm) is factorized on its
positive part max(V, 0), and the result says so (`positive_part`, `note`). Channel factors
have unit L2 norm, so a spatial factor reads in activation units, and Σ_g S_g ⊗ D_g is the
reconstruction of the part that was factorized.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from app.engine.analyses.blocks.dictionary import as_map

DEFAULT_GROUPS = 6  # as in the article
DEFAULT_ITERATIONS = 100


@dataclass(frozen=True)
class NeuronGroups:
    """k groups of one image's activations at one layer."""

    spatial: np.ndarray  # (k, H, W) float32 ≥ 0: how much of group g is at each position
    channels: np.ndarray  # (k, C) float32 ≥ 0, unit L2 norm: group g's direction
    attribution: np.ndarray | None  # (k,) float32: Σ (S_g ⊗ D_g)·∂score/∂act; None: no grad
    relative_error: float  # ‖V − Σ S_g ⊗ D_g‖_F / ‖V‖_F, V the factorized matrix
    iterations: int  # HALS iterations run
    positive_part: bool  # the layer has negative values: max(V, 0) was factorized
    note: str  # one line on what was factorized, for the user

    @property
    def k(self) -> int:
        return int(self.channels.shape[0])

    def reconstruction(self) -> np.ndarray:
        """(C, H, W) float32: Σ_g S_g ⊗ D_g."""
        return np.einsum("khw,kc->chw", self.spatial, self.channels).astype(np.float32)


def _norm(a: np.ndarray) -> float:
    """Frobenius norm without BLAS: numpy's threaded dot fights torch's spinning threads
    for the cores right after a forward (10 ms for what takes 10 µs alone)."""
    flat = a.ravel()
    return float(np.sqrt(np.einsum("i,i->", flat, flat)))


def _top_singular(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k leading singular triplets of V, (n, k), (k,), (k, m), from the eigenvectors
    of its smaller Gram matrix: LAPACK's SVD of even a 196×80 matrix takes tens of ms when
    its threads share two cores with torch's; the small symmetric eigenproblem does not."""
    n, m = v.shape
    gram = v.T @ v if m <= n else v @ v.T
    vals, vecs = np.linalg.eigh(gram)
    order = np.argsort(vals)[::-1][:k]
    s = np.sqrt(np.clip(vals[order], 0.0, None))
    vecs = vecs[:, order]
    safe = np.where(s > 0, s, 1.0)
    if m <= n:
        return (v @ vecs) / safe, s, vecs.T
    return vecs, s, ((vecs.T @ v).T / safe).T


def _nndsvda(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic non-negative start (Boutsidis & Gallopoulos 2008), zeros set to mean(V)."""
    u, s, vt = _top_singular(v, k)
    n, m = v.shape
    w, h = np.zeros((n, k)), np.zeros((k, m))
    w[:, 0] = np.sqrt(s[0]) * np.abs(u[:, 0])
    h[0] = np.sqrt(s[0]) * np.abs(vt[0])
    for j in range(1, k):
        x, y = u[:, j], vt[j]
        xp, xn, yp, yn = np.maximum(x, 0), np.maximum(-x, 0), np.maximum(y, 0), np.maximum(-y, 0)
        np_, nn_ = _norm(xp) * _norm(yp), _norm(xn) * _norm(yn)
        a, b, sigma = (xp, yp, np_) if np_ > nn_ else (xn, yn, nn_)
        na, nb = _norm(a), _norm(b)
        if sigma <= 0 or na == 0 or nb == 0:
            continue
        lam = np.sqrt(s[j] * sigma)
        w[:, j], h[j] = lam * a / na, lam * b / nb
    fill = v.mean()
    w[w == 0], h[h == 0] = fill, fill
    return w, h


def _hals(v: np.ndarray, w: np.ndarray, h: np.ndarray, iterations: int, tol: float,
          budget_s: float | None) -> int:
    """HALS on V ≈ W·H in place; → iterations run."""
    t0 = time.perf_counter()
    last = np.inf
    norm = _norm(v)
    done = 0
    for done in range(1, iterations + 1):
        wtw, wtv = w.T @ w, w.T @ v
        for j in range(h.shape[0]):
            if wtw[j, j] > 0:
                h[j] = np.maximum(h[j] + (wtv[j] - wtw[j] @ h) / wtw[j, j], 0.0)
        hht, vht = h @ h.T, v @ h.T
        for j in range(h.shape[0]):
            if hht[j, j] > 0:
                w[:, j] = np.maximum(w[:, j] + (vht[:, j] - w @ hht[:, j]) / hht[j, j], 0.0)
        if budget_s is not None and time.perf_counter() - t0 >= budget_s:
            break
        if tol > 0 and done % 10 == 0:
            err = _norm(v - w @ h) / norm
            if last - err < tol * max(err, 1e-12):
                break
            last = err
    return done


def neuron_groups(acts: np.ndarray | torch.Tensor, k: int = DEFAULT_GROUPS,
                  gradient: np.ndarray | torch.Tensor | None = None, *,
                  iterations: int = DEFAULT_ITERATIONS, warm: NeuronGroups | None = None,
                  tol: float = 1e-4, budget_s: float | None = None) -> NeuronGroups:
    """NMF of one image's (C, H, W) activation into `k` groups (fewer if C or H·W is less).

    `gradient` (C, H, W), ∂score/∂act, gives each group's attribution. `warm`: the previous
    frame's groups, the start when their shapes fit (then their order is kept).
    """
    if k < 1 or iterations < 1:
        raise ValueError("neuron groups need k ≥ 1 and at least one iteration")
    a = as_map(acts)
    c, hh, ww = a.shape
    positive = bool((a < 0).any())
    v = np.maximum(a, 0.0).reshape(c, hh * ww).T.astype(np.float64)  # (positions, channels)
    kk = min(k, *v.shape)
    note = ("the layer has negative values: its positive part was factorized"
            if positive else "the layer is non-negative: factorized as it is")
    if kk < k:
        note += f"; {kk} groups (the layer has only {min(v.shape)} channels or positions)"
    norm = _norm(v)
    if norm == 0.0:
        zero = np.zeros((kk, hh, ww), np.float32)
        return NeuronGroups(zero, np.zeros((kk, c), np.float32),
                            None if gradient is None else np.zeros(kk, np.float32), 0.0, 0,
                            positive, note + " (nothing above zero: no groups)")
    fits = (warm is not None and warm.k == kk and warm.spatial.shape == (kk, hh, ww)
            and warm.channels.shape == (kk, c) and float(warm.channels.sum()) > 0)
    if fits and warm is not None:
        w = warm.spatial.reshape(kk, hh * ww).T.astype(np.float64)
        h = warm.channels.astype(np.float64)
    else:
        w, h = _nndsvda(v, kk)
    done = _hals(v, w, h, iterations, tol, budget_s)
    scale = np.sqrt(np.einsum("kc,kc->k", h, h))
    alive = scale > 0
    h[alive] /= scale[alive, None]
    w[:, alive] *= scale[alive]
    if not fits:  # a fresh start: the biggest group first
        order = np.argsort(-w.sum(0), kind="stable")
        w, h = w[:, order], h[order]
    error = _norm(v - w @ h) / norm
    attribution = None
    if gradient is not None:
        g = as_map(gradient).reshape(c, hh * ww).T.astype(np.float64)
        attribution = ((w.T @ g) * h).sum(1).astype(np.float32)
    return NeuronGroups(w.T.reshape(kk, hh, ww).astype(np.float32), h.astype(np.float32),
                        attribution, error, done, positive, note)
