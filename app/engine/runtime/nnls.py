"""Nonnegative least-squares codes of many vectors on one dictionary, batched on any device.

`nnls_codes` answers, for many vectors x at once, min ‖x − c H‖ over c ≥ 0 — an NMF
direction layer's code at every position (`directions`). Accelerated projected gradient
(FISTA) finds the support; then, per vector, the least-squares problem restricted to that
support is solved exactly and kept when it satisfies the optimality (KKT) conditions: c_S ≥ 0
and a nonnegative gradient off the support. Vectors whose support guess was wrong get more
gradient steps and another try. So the codes are those of an exact active-set solver
(scipy's `nnls`, which the tests compare against) while the work stays batched on the device.

It lives in the runtime, not in the concepts analysis that learns the dictionaries, because
every view (scan, render, deletion, dissection, the live grid) computes codes of a concept
layer and the analyses may not import each other.
"""

from __future__ import annotations

import math

import torch

SYSTEM_BUDGET = 1 << 24  # numbers in one batch of NNLS support systems (128 MiB in float64)


def nnls_codes(x: torch.Tensor, h: torch.Tensor, *, gram: torch.Tensor | None = None,
               lipschitz: float | None = None, rounds: int = 30, steps: int = 40,
               rtol: float = 1e-6) -> torch.Tensor:
    """argmin over c ≥ 0 of ‖x − c H‖ for every row of `x` (P × C) given H (K × C): (P × K).

    See the module doc: FISTA to guess each row's support, then the exact least squares on
    it, accepted where it meets the KKT conditions to `rtol` (relative to the row's scale).
    `gram` (H Hᵀ) and `lipschitz` (its largest eigenvalue) may be given by a caller that
    codes many batches with one dictionary (`gram_of`). Rows go in blocks whose (rows × K ×
    K) systems stay under `SYSTEM_BUDGET` numbers: an early layer has 12,544 positions.
    """
    if gram is None or lipschitz is None:
        gram, lipschitz = gram_of(h)
    rows = max(1, SYSTEM_BUDGET // max(1, h.shape[0] ** 2))
    if x.shape[0] <= rows:
        return _nnls_block(x, h, gram, lipschitz, rounds, steps, rtol)
    return torch.cat([_nnls_block(x[i:i + rows], h, gram, lipschitz, rounds, steps, rtol)
                      for i in range(0, x.shape[0], rows)])


def _nnls_block(x: torch.Tensor, h: torch.Tensor, gram: torch.Tensor, lipschitz: float,
                rounds: int, steps: int, rtol: float) -> torch.Tensor:
    p, k = x.shape[0], h.shape[0]
    dtype = x.dtype
    g = gram.to(x.device, dtype)  # (K, K)
    b = x @ h.T  # (P, K)
    out = torch.zeros(p, k, dtype=dtype, device=x.device)
    if p == 0 or k == 0:
        return out
    exact = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    scale = b.abs().amax(dim=1).clamp_min(torch.finfo(dtype).tiny)  # per row
    todo = torch.arange(p, device=x.device)
    c = torch.zeros(p, k, dtype=dtype, device=x.device)
    y, t = c.clone(), 1.0
    eye = torch.eye(k, dtype=torch.bool, device=x.device)
    for _ in range(rounds):
        bt = b[todo]
        for _ in range(steps):
            c_next = (y - (y @ g - bt) / lipschitz).clamp_min_(0)
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = c_next + (t - 1) / t_next * (c_next - c)
            c, t = c_next, t_next
        # exact least squares on each row's support; rows outside it get the identity
        s = c > 0
        both = s[:, :, None] & s[:, None, :]
        system = torch.where(both, g.expand_as(both), eye.to(dtype).expand_as(both))
        sol, info = torch.linalg.solve_ex(system.to(exact), (bt * s).to(exact))
        sol = sol.to(dtype) * s
        grad = sol @ g - bt
        tol = rtol * scale[todo][:, None]
        ok = ((info == 0) & sol.isfinite().all(1) & (sol >= -tol).all(1)
              & ((grad >= -tol) | s).all(1))
        out[todo[ok]] = sol[ok].clamp_min(0)
        keep = ~ok
        if not bool(keep.any()):
            return out
        todo, c, y, t = todo[keep], c[keep], c[keep].clone(), 1.0
    out[todo] = c  # still no exact support: the gradient iterate, close to it
    return out


def gram_of(h: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(H Hᵀ, its largest eigenvalue): what `nnls_codes` needs of a dictionary, once."""
    g = h @ h.T
    top = float(torch.linalg.eigvalsh(g.double().cpu()).max()) if len(g) else 1.0
    return g, top or 1.0
