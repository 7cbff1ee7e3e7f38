"""Per-unit thresholds: a streaming, mergeable quantile sketch, and a top-k of images.

`QuantileSketch` is a histogram per unit on a power-of-two grid: bin j of unit c holds
the values v with floor(v / 2^e_c) = o_c + j, for `bins` consecutive j. When a batch's
values do not fit, e_c grows (pairs of bins merge: the grids are nested, so the counts
are exactly those of a histogram built at the coarser grid from the start) until they do.
e_c is always the smallest exponent ≥ `MIN_EXP` at which all values seen fit, so the
state is a function of the multiset of values alone: any batch grouping, a resumed run or
a merge of shards (torchrun) gives the same counts. Memory: units × bins int64, whatever
the dataset size.

Error bound: the estimate of any order statistic lies in the bin of the true one, so the
threshold (numpy's linear interpolation between two order statistics, each estimated)
is within one bin width 2^e_c of `numpy.quantile` on all the values; at that e_c the values
did not fit at half the width, so the width is at most 2·(max − min)/(bins − 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

MIN_EXP = -64  # finest grid: 2^-64, below any resolution a float32 activation carries
MAX_INDEX = 2**60  # |v| / 2^e stays an exact int64


def _needed_exp(lo: np.ndarray, hi: np.ndarray, bins: int, start: np.ndarray) -> np.ndarray:
    """Smallest e ≥ start per unit with floor(hi/2^e) − floor(lo/2^e) < bins, no overflow."""
    e = start.astype(np.int64).copy()
    span = np.maximum(hi - lo, 0.0)
    mag = np.maximum(np.abs(lo), np.abs(hi))
    with np.errstate(divide="ignore"):
        guess = np.where(span > 0, np.floor(np.log2(np.maximum(span, 1e-300) / bins)), MIN_EXP)
        over = np.where(mag > 0, np.ceil(np.log2(np.maximum(mag, 1e-300) / MAX_INDEX)), MIN_EXP)
    e = np.maximum(e, np.maximum(guess, over).astype(np.int64) - 1)
    while True:  # the guess is within a step or two of the answer
        w = np.ldexp(1.0, e)
        bad = (np.floor(hi / w) - np.floor(lo / w) >= bins) | (mag / w >= MAX_INDEX)
        if not bad.any():
            return e
        e = e + bad


class QuantileSketch:
    """Histograms of (units,) streams of values on the device; see the module doc.

    Where each unit's window starts (`offset`) is free as long as its filled bins lie in it:
    a window moves (and the histogram with it) only when a batch's values fall outside it or
    the grid grows, and only for those units; `state()` gives the canonical form (window at
    the first filled bin). The absolute numbers of each unit's first and last filled bins
    are kept as numbers, so no batch scans the histograms to find them."""

    def __init__(self, units: int, device: torch.device, bins: int = 4096) -> None:
        self.units, self.bins, self.device = units, bins, device
        self.exp = np.full(units, MIN_EXP, np.int64)
        self.offset = np.zeros(units, np.int64)  # bin index of counts[:, 0]
        self.counts = torch.zeros(units, bins, dtype=torch.int64, device=device)
        self.first = np.zeros(units, np.int64)  # absolute bin numbers at `exp` …
        self.last = np.zeros(units, np.int64)
        self.held = np.zeros(units, bool)  # … of units that hold values

    def add(self, acts: torch.Tensor) -> None:
        """Fold every value of (N, units, ...) `acts` into each unit's histogram."""
        v = acts.detach().float().transpose(0, 1).reshape(self.units, -1)
        if v.shape[1] == 0:
            return
        lo = v.amin(1).double().cpu().numpy()
        hi = v.amax(1).double().cpu().numpy()
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("activations are not finite (NaN or infinity)")
        self._cover(lo, hi, self.exp)
        scale = np.ldexp(1.0, -self.exp)
        idx = torch.floor(v * torch.from_numpy(scale).to(self.device, torch.float32)[:, None]
                          ).long()
        idx -= torch.from_numpy(self.offset).to(self.device)[:, None]
        idx += torch.arange(self.units, device=self.device)[:, None] * self.bins
        self.counts += torch.bincount(idx.view(-1), minlength=self.units * self.bins
                                      ).view(self.units, self.bins)
        # power-of-two scaling is exact: these are the bins the extremes just landed in
        self.first = np.where(self.held, np.minimum(self.first, np.floor(lo * scale)),
                              np.floor(lo * scale)).astype(np.int64)
        self.last = np.where(self.held, np.maximum(self.last, np.floor(hi * scale)),
                             np.floor(hi * scale)).astype(np.int64)
        self.held[:] = True

    def _stored_range(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower edge of the first filled bin, of the last, which units hold values)."""
        w = np.ldexp(1.0, self.exp)
        return self.first * w, self.last * w, self.held.copy()

    def _cover(self, lo: np.ndarray, hi: np.ndarray, start: np.ndarray) -> None:
        """Grow grids (from `start`) and move windows so that [lo, hi] fits beside what is
        stored; NaN: nothing new for that unit. A stored bin's lower edge stands for its
        values: at any grid at least as coarse it falls in the same bin."""
        s_lo, s_hi, held = self._stored_range()
        new = ~np.isnan(lo)
        lo = np.where(held & new, np.minimum(lo, s_lo), np.where(new, lo, s_lo))
        hi = np.where(held & new, np.maximum(hi, s_hi), np.where(new, hi, s_hi))
        touched = held | new
        exp = np.where(touched, _needed_exp(np.where(touched, lo, 0.0),
                                            np.where(touched, hi, 0.0), self.bins, start),
                       self.exp)
        w = np.ldexp(1.0, exp)
        low_bin = np.floor(np.where(touched, lo, 0.0) / w).astype(np.int64)
        high_bin = np.floor(np.where(touched, hi, 0.0) / w).astype(np.int64)
        fits = ((exp == self.exp) & (low_bin >= self.offset)
                & (high_bin < self.offset + self.bins))
        # a window that moves is centred on the range: room to grow both ways (a range
        # takes at least half the bins of its grid, so a window at its low end moved again
        # at most batches while the minimum kept falling)
        slack = self.bins - 1 - (high_bin - low_bin)
        offset = np.where(touched & ~fits, low_bin - slack // 2, self.offset)
        self._rebin(exp, offset)

    def _rebin(self, exp: np.ndarray, offset: np.ndarray) -> None:
        """Move the units whose grid or window changes to `exp` and `offset` (those only)."""
        moved = (exp != self.exp) | (offset != self.offset)
        rows = np.flatnonzero(moved & self.held)  # an empty histogram has nothing to move
        if rows.size == 0:
            self.exp, self.offset = exp.astype(np.int64), offset.astype(np.int64)
            return
        shift_np = exp[rows] - self.exp[rows]
        r = torch.from_numpy(rows).to(self.device)
        shift = torch.from_numpy(shift_np).to(self.device)[:, None]
        j = torch.arange(self.bins, device=self.device)[None, :]
        old = torch.from_numpy(self.offset[rows]).to(self.device)[:, None] + j
        # floor division by 2^shift of possibly negative bin numbers: an arithmetic shift
        new = (old >> shift) - torch.from_numpy(offset[rows]).to(self.device)[:, None]
        part = self.counts[r]
        keep = part.ne(0)
        if keep.any() and (new[keep].min() < 0 or new[keep].max() >= self.bins):
            raise AssertionError("sketch rebin out of range")  # a bug, never the data
        flat = new.clamp(0, self.bins - 1) + torch.arange(
            len(rows), device=self.device)[:, None] * self.bins
        moved = torch.zeros(len(rows) * self.bins, dtype=torch.int64, device=self.device)
        moved.index_add_(0, flat.reshape(-1), part.reshape(-1))
        self.counts[r] = moved.view(len(rows), self.bins)
        step = np.minimum(shift_np, 63)  # a shift of 63 leaves 0 or -1: the floor already
        self.first[rows] >>= step
        self.last[rows] >>= step
        self.exp, self.offset = exp.astype(np.int64), offset.astype(np.int64)

    # -- state: checkpoints and merges --------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The canonical state: each held unit's window starts at its first filled bin."""
        self._rebin(self.exp, np.where(self.held, self.first, self.offset))
        return {"exp": self.exp.copy(), "offset": self.offset.copy(),
                "counts": self.counts.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.exp, self.offset = state["exp"].astype(np.int64), state["offset"].astype(np.int64)
        self.counts = torch.from_numpy(state["counts"].astype(np.int64)).to(self.device)
        filled = self.counts.ne(0).cpu().numpy()
        self.held = np.asarray(filled.any(1))
        self.first = self.offset + filled.argmax(1)
        self.last = self.offset + self.bins - 1 - filled[:, ::-1].argmax(1)

    def merge(self, other: QuantileSketch) -> None:
        """Add `other`'s values (same units and bins): exactly as if they were seen here."""
        o_lo, o_hi, o_held = other._stored_range()
        self._cover(np.where(o_held, o_lo, np.nan), np.where(o_held, o_hi, np.nan),
                    np.maximum(self.exp, np.where(o_held, other.exp, MIN_EXP)))
        theirs = QuantileSketch(self.units, self.device, self.bins)
        theirs.load(other.state())
        theirs._rebin(np.where(o_held, self.exp, theirs.exp),
                      np.where(o_held, self.offset, theirs.offset))
        self.counts += torch.where(torch.from_numpy(o_held).to(self.device)[:, None],
                                   theirs.counts, 0)
        # the merged range, at this grid: the union of both ranges' bins
        w = np.ldexp(1.0, self.exp)
        o_first = np.floor(o_lo / w).astype(np.int64)
        o_last = np.floor(o_hi / w).astype(np.int64)
        self.first = np.where(o_held, np.where(self.held, np.minimum(self.first, o_first),
                                               o_first), self.first)
        self.last = np.where(o_held, np.where(self.held, np.maximum(self.last, o_last),
                                              o_last), self.last)
        self.held |= o_held

    # -- readout -------------------------------------------------------------------------
    def quantile(self, q: float) -> tuple[np.ndarray, np.ndarray]:
        """(thresholds, error bounds): per unit the q quantile (numpy's linear method) of
        all values added, and the bound on its error (one bin width)."""
        counts = self.counts.cpu().numpy()
        out = np.zeros(self.units)
        width = np.ldexp(1.0, self.exp)
        for c in range(self.units):
            n = int(counts[c].sum())
            if n == 0:
                out[c] = math.nan
                continue
            cum = np.cumsum(counts[c])
            r = q * (n - 1)
            k = math.floor(r)
            a = self._order_stat(counts[c], cum, k, c, width[c])
            b = self._order_stat(counts[c], cum, min(k + 1, n - 1), c, width[c])
            out[c] = a + (r - k) * (b - a)
        return out, width

    def _order_stat(self, counts: np.ndarray, cum: np.ndarray, j: int, c: int,
                    width: float) -> float:
        """The j-th smallest value (0-based), taken as spread evenly in its bin."""
        b = int(np.searchsorted(cum, j, side="right"))
        before = cum[b - 1] if b else 0
        inside = (j - before + 0.5) / counts[b]
        return float((self.offset[c] + b + inside) * width)
