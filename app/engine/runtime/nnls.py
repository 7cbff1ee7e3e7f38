"""Nonnegative least-squares codes of many vectors on one dictionary, batched on any device.

`nnls_codes` answers, for many vectors x at once, min ‖x − c H‖ over c ≥ 0 — an NMF
direction layer's code at every position (`directions`). With b = x Hᵀ and the Gram matrix
G = H Hᵀ (K × K, small) that is min ½ cᵀGc − bᵀc over c ≥ 0, a strongly convex problem when
the directions are independent (μ = λ_min(G) > 0, L = λ_max(G)).

How, and why so. A live frame pays for one map's codes, so the work is a few kernels over a
(positions × K) matrix, not a solver per position:

1. Start from the clamped least-squares solution max(b G⁻¹, 0) (G⁻¹ once per dictionary): on
   real maps it has most of the right support already, where a start from zero needs tens
   of gradient steps to find it.
2. Accelerated projected gradient, each step c⁺ = max(y (I − G/L) + b/L, 0) (one fused
   multiply-add, a clamp and a lerp for the momentum, the constant β = (√L − √μ)/(√L + √μ) of
   a strongly convex problem).
3. Every `CHUNK` steps, a certificate per position: for a μ-strongly convex problem the
   gradient mapping G = L (c − c⁺) bounds the distance to the optimum, ‖c − c*‖ ≤ 2‖G‖/μ
   (from the fundamental inequality of proximal gradient, Beck, First-Order Methods in
   Optimization, 2017, ch. 10: 0 ≥ ⟨G, c* − c⟩ + ‖G‖²/2L + μ‖c* − c‖²/2), and the step
   c⁺ is no farther than c. A position is done when that bound is ≤ `rtol` ‖c⁺‖: its codes
   are within `rtol` (relative) of the exact NNLS solution, proven, not estimated.
4. Positions not certified after `SOLVE_AFTER` steps (an ill-conditioned dictionary, or one
   with μ = 0, where the certificate says nothing) get the exact least squares on their
   current support (a batched Cholesky of each support's own m × m system), kept where it
   meets the KKT conditions (c_S ≥ 0 and a nonnegative gradient off the support) — the
   answer of an active-set solver (scipy's `nnls`, which the tests compare against); the
   rest get more steps and another try.

On the bundled model's `_blocks.8` maps (196 positions, K = 32, κ(G) ≈ 4) step 3 certifies
every position after 20–30 steps and no solve is needed; on `_blocks.11` (κ(G) ≈ 36) the
float32 gradient cannot certify 1e-5 and the solve at step 30 answers. `docs/benchmarks.md`
has the times against the previous solver (40 steps from zero, then a solve per position).

Precision: "exact" is for the problem as float32 holds it. Forming b = x Hᵀ in float32 (as
every solver of the normal equations does) moves the exact answer by up to about κ(G)·ε
(ε = 1.2e-7) relative, below `rtol` for a learned dictionary (κ in the tens) and 1e-4 only
for a dictionary of nearly parallel directions (κ ≈ 3,700, tested).

`fixed_steps` (that many steps from the start of 1., no certificate, no solve) is the cheap
variant for a display that can take an approximation; its error on real maps is in
`docs/benchmarks.md`. The analyses use the exact codes.

It lives in the runtime, not in the concepts analysis that learns the dictionaries, because
every view (scan, render, deletion, dissection, the live grid) computes codes of a concept
layer and the analyses may not import each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SYSTEM_BUDGET = 1 << 24  # numbers in one batch of NNLS support systems (128 MiB in float64)
CHUNK = 10  # gradient steps between two certificates
SOLVE_AFTER = 30  # steps before uncertified positions try the exact solve on their support
MAX_STEPS = 1200  # after this many, a position keeps its gradient iterate (close to exact)
RTOL = 1e-5  # the certified relative distance to the exact codes


@dataclass(frozen=True)
class NNLSDictionary:
    """What `nnls_codes` needs of a dictionary H (K × C), computed once: G = H Hᵀ, its
    extreme eigenvalues, the start's G⁻¹ (pseudo-inverse when singular) and the step's
    matrix I − G/L, all on H's device and dtype."""

    h: torch.Tensor  # (K, C)
    gram: torch.Tensor  # (K, K)
    lipschitz: float  # λ_max(G)
    convexity: float  # λ_min(G), 0 when the directions are dependent
    inverse: torch.Tensor  # (K, K)
    step: torch.Tensor  # (K, K) I − G/L

    @classmethod
    def of(cls, h: torch.Tensor, gram: torch.Tensor | None = None) -> NNLSDictionary:
        g = h @ h.T if gram is None else gram.to(h.device, h.dtype)
        k = g.shape[0]
        if k == 0:
            empty = torch.zeros(0, 0, dtype=h.dtype, device=h.device)
            return cls(h, g, 1.0, 0.0, empty, empty)
        g64 = g.detach().double().cpu()
        ev = torch.linalg.eigvalsh(g64)
        top = float(ev.max()) or 1.0
        low = float(ev.min())
        convexity = low if low > top * 1e-6 else 0.0  # below that, rounding swamps it
        inverse = torch.linalg.pinv(g64, hermitian=True).to(h.device, h.dtype)
        step = (torch.eye(k, dtype=torch.float64) - g64 / top).to(h.device, h.dtype)
        return cls(h, g, top, convexity, inverse, step)

    def to(self, device: torch.device, dtype: torch.dtype) -> NNLSDictionary:
        if self.h.device == device and self.h.dtype == dtype:
            return self
        return NNLSDictionary(self.h.to(device, dtype), self.gram.to(device, dtype),
                              self.lipschitz, self.convexity,
                              self.inverse.to(device, dtype), self.step.to(device, dtype))

    @property
    def momentum(self) -> float:
        """The constant momentum of accelerated gradient on a μ-strongly convex problem."""
        rl, rm = math.sqrt(self.lipschitz), math.sqrt(self.convexity)
        return (rl - rm) / (rl + rm)


def nnls_codes(x: torch.Tensor, h: torch.Tensor, *, gram: torch.Tensor | None = None,
               lipschitz: float | None = None, prepared: NNLSDictionary | None = None,
               rtol: float = RTOL, fixed_steps: int | None = None) -> torch.Tensor:
    """argmin over c ≥ 0 of ‖x − c H‖ for every row of `x` (P × C) given H (K × C): (P × K).

    See the module doc: each row's codes are within `rtol` (relative) of the exact solution,
    by a certificate or by an exact solve on its support. `prepared` (`NNLSDictionary.of`)
    spares a caller that codes many batches with one dictionary the K × K work per call
    (`gram`, with `lipschitz` ignored, is the older way to give part of it).
    `fixed_steps`: that many gradient steps instead, no guarantee (the cheap display
    variant). Rows go in blocks whose (rows × K × K) systems stay under `SYSTEM_BUDGET`.
    """
    del lipschitz  # recomputed with the rest of `NNLSDictionary`
    d = (prepared if prepared is not None else NNLSDictionary.of(h, gram)).to(x.device, x.dtype)
    rows = max(1, SYSTEM_BUDGET // max(1, d.h.shape[0] ** 2))
    if x.shape[0] <= rows:
        return _nnls_block(x, d, rtol, fixed_steps)
    return torch.cat([_nnls_block(x[i:i + rows], d, rtol, fixed_steps)
                      for i in range(0, x.shape[0], rows)])


def _momenta(d: NNLSDictionary, start: int, n: int) -> list[float]:
    """The lerp weights 1 + β of steps start … start + n: constant when μ > 0, else FISTA's."""
    if d.convexity > 0:
        return [1 + d.momentum] * n
    out, t = [], 1.0
    for i in range(start + n):
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        if i >= start:
            out.append(1 + (t - 1) / t_next)
        t = t_next
    return out


def _nnls_block(x: torch.Tensor, d: NNLSDictionary, rtol: float, steps: int | None
                ) -> torch.Tensor:
    p, k = x.shape[0], d.h.shape[0]
    b = x @ d.h.T  # (P, K)
    if p == 0 or k == 0:
        return torch.zeros(p, k, dtype=x.dtype, device=x.device)
    c = (b @ d.inverse).clamp_min_(0)
    bl = b / d.lipschitz
    if steps is not None:
        return _descend(c, c, bl, d, _momenta(d, 0, steps))[0]
    # rows still to answer: their indices (None: all, in order) and their state
    out, todo = torch.zeros_like(c), None
    prev, done, scale = c, 0, b.abs().amax(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    while True:
        c, prev = _descend(c, prev, bl, d, _momenta(d, done, CHUNK))
        done += CHUNK
        answer, ok = c, torch.zeros(len(c), dtype=torch.bool, device=x.device)
        if d.convexity > 0:  # the certificate of the module doc
            nxt = torch.addmm(bl, c, d.step).clamp_min_(0)
            gap = 2 * d.lipschitz * (c - nxt).norm(dim=1)
            ok = gap <= rtol * d.convexity * nxt.norm(dim=1)
            answer = torch.where(ok[:, None], nxt, c)
        finished = int(ok.sum())  # the one sync of a chunk (two when it solves)
        if done % SOLVE_AFTER == 0 and finished < len(c):
            if finished == 0:  # as on an ill-conditioned dictionary: no indexing
                sol, solved = _support_solve(c, b, d.gram, rtol * 0.1 * scale)
                answer, ok = torch.where(solved[:, None], sol, answer), solved
            else:
                rest = (~ok).nonzero().squeeze(1)
                sol, solved = _support_solve(c[rest], b[rest], d.gram,
                                             rtol * 0.1 * scale[rest])
                answer[rest[solved]] = sol[solved]
                ok[rest[solved]] = True
            finished = int(ok.sum())
        if finished == len(c) or done >= MAX_STEPS:  # at the cap: the iterate, close to exact
            if todo is None:
                return answer
            out[todo] = answer
            return out
        if finished == 0:
            continue
        here = torch.arange(len(c), device=x.device) if todo is None else todo
        out[here[ok]] = answer[ok]
        keep = ~ok
        todo, c, prev, b, bl, scale = (here[keep], c[keep], prev[keep], b[keep], bl[keep],
                                       scale[keep])


def _descend(c: torch.Tensor, prev: torch.Tensor, bl: torch.Tensor, d: NNLSDictionary,
             weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Accelerated projected gradient from (c, the iterate before it): three kernels a step."""
    y = torch.lerp(prev, c, weights[0]) if weights and prev is not c else c
    for i in range(len(weights)):
        nxt = torch.addmm(bl, y, d.step).clamp_min_(0)
        if i + 1 < len(weights):
            y = torch.lerp(c, nxt, weights[i + 1])
        prev, c = c, nxt
    return c, prev


def _support_solve(c: torch.Tensor, b: torch.Tensor, gram: torch.Tensor, tol: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The least squares restricted to each row's support (c > 0), and where it is the NNLS
    solution: nonnegative on the support, a nonnegative gradient off it (to `tol`).

    Each row's support indices are gathered first (padded to the widest support with an
    identity block), so the batched Cholesky factors m × m systems, not K × K: a
    factorization's cost goes with m³ and supports are often half of K or less."""
    dtype = c.dtype
    exact = torch.float32 if c.device.type == "mps" else torch.float64  # MPS has no float64
    s = c > 0
    width = int(s.sum(1).max()) if len(s) else 0
    idx = torch.argsort((~s).to(torch.uint8), dim=1, stable=True)[:, :max(width, 1)]
    on = s.gather(1, idx)  # (P, m): which of the gathered indices are in the support
    both = on[:, :, None] & on[:, None, :]
    eye = torch.eye(idx.shape[1], dtype=exact, device=c.device)
    sub = gram.to(exact)[idx[:, :, None], idx[:, None, :]]
    system = torch.where(both, sub, eye.expand_as(both))
    rhs = (b.gather(1, idx) * on).to(exact)
    if c.device.type == "mps":  # batched LU, as before the Cholesky: what MPS surely has
        sol_sub, info = torch.linalg.solve_ex(system, rhs)
    else:
        factor, info = torch.linalg.cholesky_ex(system)
        half = torch.linalg.solve_triangular(factor, rhs[..., None], upper=False)
        sol_sub = torch.linalg.solve_triangular(factor.mT, half, upper=True)[..., 0]
    sol = torch.zeros(c.shape, dtype=dtype, device=c.device).scatter_(
        1, idx, sol_sub.to(dtype) * on)
    grad = sol @ gram - b
    t = tol[:, None]
    ok = ((info == 0) & sol.isfinite().all(1) & (sol >= -t).all(1) & ((grad >= -t) | s).all(1))
    return sol.clamp_min(0), ok


def gram_of(h: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(H Hᵀ, its largest eigenvalue): the Gram matrix of a dictionary and its L."""
    g = h @ h.T
    top = float(torch.linalg.eigvalsh(g.double().cpu()).max()) if len(g) else 1.0
    return g, top or 1.0
