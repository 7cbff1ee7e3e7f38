"""What the cache already knows about a layer, read without a dataset.

The catalogue renders preferred images itself but never scans or ablates: those need a
dataset and minutes to hours, so it shows what earlier `deepvis scan` / `deepvis ablate`
runs (or the window's jobs) cached for this exact model, and says on the page what is
missing and which command makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.files import safe_filename
from app.core.scan_results import ScanResult, load_scan
from app.core.selectivity import deletion_orders
from app.engine.analyses.ablation import CurveResult
from app.engine.analyses.ablation.curves import cache_file, load_cached
from app.engine.analyses.ablation.datasets import Dataset
from app.engine.analyses.dissection import cached_layer, concept_text
from app.engine.runtime.models import LoadedModel


def cached_scan(root: Path, key: str, layer: str, channels: int) -> ScanResult | None:
    """The cached top-k scan of `layer` (None: none, or one of another shape)."""
    scan = load_scan(root, key, layer)
    return scan if scan is not None and scan.units == channels else None


def cached_curves(loaded: LoadedModel, layer: str, channels: int,
                  cache_dir: str) -> CurveResult | None:
    """The newest cached ablation-curves result of `layer`, on whatever dataset it was.

    The cache file is named by a fingerprint of its dataset (`cache_file`), which the
    catalogue does not have: it lists the layer's results and takes the newest one whose
    document names this layer and its unit count.
    """
    # the folder as the analysis itself names it, so the two never disagree
    folder = cache_file(loaded, Dataset((), None), layer, 1, 2, cache_dir).parent
    if not folder.is_dir():
        return None
    # safe_filename keeps only letters, digits and -_.@: nothing a glob would expand
    candidates = sorted(folder.glob(f"{safe_filename(layer)}-*.json"),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        result = load_cached(path)
        if result is not None and result.layer == layer and result.units == channels:
            return result
    return None


def concept_labels(root: Path, key: str, layer: str) -> dict[int, str] | None:
    """Unit → concept label of the interpretable units of `layer`, from the newest cached
    dissection (`deepvis dissect`); None when the layer was never dissected."""
    found = cached_layer(root / key, layer)
    if found is None:
        return None
    return {u.unit: concept_text(u) for u in found[1].units if u.interpretable}


@dataclass(frozen=True)
class UnitAblation:
    """One unit in its layer's cached curves: selectivity, and where the
    most-selective-first curve deletes it."""

    index: float
    rank: int  # 0 = the most class-selective unit of the layer
    preferred_class: int
    level: int  # the curve's point at which this unit is first deleted
    accuracy_before: float  # at the point before (the unit still there)
    accuracy_after: float  # at `level`
    random_after: float  # mean of the random orders at `level`, for comparison


def unit_ablation(result: CurveResult, unit: int) -> UnitAblation:
    """Where `unit` stands in `result` (the deletion order rebuilt as the analysis built it)."""
    order = deletion_orders(np.asarray(result.selectivity), 0)["selectivity_high_to_low"]
    rank = int(np.flatnonzero(order == unit)[0])
    level = next(i for i, k in enumerate(result.deleted) if k > rank)
    curve = result.curves["selectivity_high_to_low"]
    return UnitAblation(
        float(result.selectivity[unit]), rank, int(result.preferred_class[unit]), level,
        float(curve[level - 1]), float(curve[level]),
        float(result.random_curves().mean(0)[level]))
