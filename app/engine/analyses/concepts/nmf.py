"""NMF of a sample matrix and nonnegative least-squares codes, in torch on any device.

`NMFFit` factorizes A (n × C, nonnegative) ≈ W (n × K) H (K × C) by HALS (hierarchical
alternating least squares, Cichocki & Phan 2009): each column of W, then each row of H, is
the exact minimizer of the error with the others fixed, clamped at zero. It converges in far
fewer iterations than the multiplicative updates and costs the same two products per
iteration, A Hᵀ and Wᵀ A, which are taken over row blocks of A so that the temporaries stay
bounded however many samples there are. The state (W, H, the iteration, the last error) is
plain tensors: a job checkpoints it between steps and a resumed fit continues bit for bit
(CPU arithmetic is deterministic for the same shapes; the start is seeded).

`nnls_codes` (a concept layer's codes at every position) lives in `runtime.nnls`: every
view computes codes, and the analyses may not import each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from app.engine.runtime.nnls import gram_of, nnls_codes

__all__ = ["NMFFit", "gram_of", "nnls_codes", "residual_norm", "wide"]

ROW_BLOCK = 16384  # rows of A per product: bounds the (block × C) temporaries


def wide(t: torch.Tensor) -> torch.Tensor:
    """`t` in float64 for sums, except on Apple's MPS, which has no float64."""
    return t.float() if t.device.type == "mps" else t.double()


def _blocks(n: int) -> list[slice]:
    return [slice(i, min(i + ROW_BLOCK, n)) for i in range(0, n, ROW_BLOCK)]


def _a_ht(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.cat([a[s] @ h.T for s in _blocks(a.shape[0])]) if a.shape[0] else a @ h.T


def _wt_a(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(w.shape[1], a.shape[1], dtype=a.dtype, device=a.device)
    for s in _blocks(a.shape[0]):
        out += w[s].T @ a[s]
    return out


def residual_norm(a: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> float:
    """‖A − W H‖ (Frobenius), block by block, in float64 sums."""
    total = 0.0
    for s in _blocks(a.shape[0]):
        total += float(wide(a[s] - w[s] @ h).square().sum())
    return math.sqrt(total)


@dataclass
class NMFFit:
    """A HALS fit in progress; `step(n)` runs n iterations, `converged` says when to stop."""

    a: torch.Tensor  # (n, C) ≥ 0, the samples
    w: torch.Tensor  # (n, K)
    h: torch.Tensor  # (K, C)
    iteration: int = 0
    error: float = math.inf  # relative error after the last iteration
    previous: float = math.inf  # … and after the one before
    tol: float = 1e-5  # stop when an iteration lowers the relative error by less than this
    norm_a2: float = 0.0  # ‖A‖², once

    @classmethod
    def start(cls, a: torch.Tensor, k: int, seed: int, tol: float = 1e-5) -> NMFFit:
        """Random nonnegative W, H scaled so that W H has A's mean (seeded, on the CPU
        generator, so every device starts from the same numbers)."""
        n, c = a.shape
        g = torch.Generator().manual_seed(seed)
        scale = math.sqrt(max(float(a.mean()), 1e-12) / k)
        w = (torch.rand(n, k, generator=g) * scale).to(a)
        h = (torch.rand(k, c, generator=g) * scale).to(a)
        return cls(a, w, h, tol=tol)

    @property
    def converged(self) -> bool:
        return self.previous - self.error < self.tol

    def step(self, iterations: int = 1) -> float:
        """Run HALS iterations; returns the relative error ‖A − WH‖/‖A‖ after them."""
        a, w, h = self.a, self.w, self.h
        if self.norm_a2 == 0.0:
            self.norm_a2 = float(wide(a).square().sum()) or 1.0
        tiny = torch.finfo(a.dtype).tiny
        for _ in range(iterations):
            # the diagonals stay tensors: a float() per concept would stall a GPU 2K times
            aht, hht = _a_ht(a, h), h @ h.T
            hd = hht.diagonal().clamp_min(tiny)
            for k in range(h.shape[0]):
                w[:, k] = (w[:, k] + (aht[:, k] - w @ hht[:, k]) / hd[k]).clamp_min_(0)
            wta, wtw = _wt_a(w, a), w.T @ w
            wd = wtw.diagonal().clamp_min(tiny)
            for k in range(h.shape[0]):
                h[k] = (h[k] + (wta[k] - wtw[k] @ h) / wd[k]).clamp_min_(0)
            # ‖A − WH‖² = ‖A‖² − 2⟨WᵀA, H⟩ + ⟨WᵀW, HHᵀ⟩: no n × C temporary
            err2 = (self.norm_a2 - 2 * float(wide(wta * h).sum())
                    + float((wide(wtw) * wide(h @ h.T)).sum()))
            self.previous, self.error = self.error, math.sqrt(max(err2, 0.0) / self.norm_a2)
            self.iteration += 1
        return self.error

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, H) with unit-norm rows of H (their norms moved into W), ordered by how much
        of A each explains (the column sums of W, largest first); all-zero rows last."""
        norms = self.h.norm(dim=1)
        h = self.h / norms.clamp_min(torch.finfo(self.h.dtype).tiny)[:, None]
        w = self.w * norms[None, :]
        order = torch.argsort(w.sum(0), descending=True, stable=True)
        return w[:, order].contiguous(), h[order].contiguous()

    def state(self) -> dict[str, torch.Tensor]:
        return {"w": self.w, "h": self.h,
                "progress": torch.tensor([self.iteration, self.error, self.previous],
                                         dtype=torch.float64)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.w = state["w"].to(self.a).clone()
        self.h = state["h"].to(self.a).clone()
        it, err, prev = state["progress"].tolist()
        self.iteration, self.error, self.previous = int(it), err, prev
