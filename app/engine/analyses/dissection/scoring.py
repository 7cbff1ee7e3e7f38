"""From tallies to concept labels: IoU per unit and label, best label per category, summary.

Pure numpy, on the integer tallies of a whole dataset (so merged shards score the same):

    both[u, l]      pixels where unit u's mask and label l coincide
    unit_cat[u, k]  pixels of u's mask in the images that annotate category k
    label_px[l]     pixels of label l (an image-level label covers its whole image)

IoU(u, l) = both / (unit_cat[u, k(l)] + label_px[l] − both), k(l) the label's primary
category (0 where the denominator is 0). Per category the best label (the lowest label
number on ties); the unit's label is the best over categories (the first category on ties);
it is interpretable when that IoU exceeds `min_iou`.

Which NetDissect: |mask| is `unit_cat`, the unit's mask counted in every image where the
category is annotated, as the 2017 NetDissect (Bau et al.) does. NetDissect-Lite counts it
only in images where the mask touches a label of that category, a smaller union (its IoUs
are equal or higher, most for rarely annotated categories). The app follows the 2017 rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class UnitConcept:
    """What one unit detects: its best label overall and per category."""

    unit: int
    label: str
    category: str
    iou: float
    threshold: float
    threshold_error: float  # |threshold − exact quantile| is at most this
    interpretable: bool
    per_category: dict[str, tuple[str, float]]  # category → (best label, its IoU)
    top_images: str = ""  # PNG of the unit's top images with its mask drawn ("" if none)

    def to_json(self) -> dict:
        return {"unit": self.unit, "label": self.label, "category": self.category,
                "iou": self.iou, "threshold": self.threshold,
                "threshold_error": self.threshold_error, "interpretable": self.interpretable,
                "per_category": {c: {"label": lab, "iou": v}
                                 for c, (lab, v) in self.per_category.items()},
                "top_images": self.top_images}

    @classmethod
    def from_json(cls, doc: dict) -> UnitConcept:
        return cls(int(doc["unit"]), doc["label"], doc["category"], float(doc["iou"]),
                   float(doc["threshold"]), float(doc["threshold_error"]),
                   bool(doc["interpretable"]),
                   {c: (v["label"], float(v["iou"])) for c, v in doc["per_category"].items()},
                   doc.get("top_images", ""))


def iou_table(both: np.ndarray, unit_cat: np.ndarray, label_px: np.ndarray,
              primary: np.ndarray) -> np.ndarray:
    """(units, labels) IoU; labels with no primary category (−1) get 0."""
    scored = primary >= 0
    mask_px = unit_cat[:, np.where(scored, primary, 0)]
    union = mask_px + label_px[None, :] - both
    iou = np.divide(both, union, out=np.zeros(both.shape), where=union > 0)
    iou[:, ~scored] = 0.0
    return iou


def label_units(both: np.ndarray, unit_cat: np.ndarray, label_px: np.ndarray,
                primary: np.ndarray, names: tuple[str, ...], categories: tuple[str, ...],
                thresholds: np.ndarray, errors: np.ndarray, min_iou: float
                ) -> tuple[UnitConcept, ...]:
    """Every unit's `UnitConcept`, unit order."""
    iou = iou_table(both, unit_cat, label_px, primary)
    best_l = np.zeros((len(categories), iou.shape[0]), np.int64)
    best_v = np.zeros((len(categories), iou.shape[0]))
    for k in range(len(categories)):
        cols = np.flatnonzero(primary == k)
        if cols.size:
            pick = iou[:, cols].argmax(1)
            best_l[k], best_v[k] = cols[pick], iou[np.arange(iou.shape[0]), cols[pick]]
        else:
            best_l[k] = -1
    out = []
    for u in range(iou.shape[0]):
        per = {c: (names[best_l[k, u]] if best_l[k, u] >= 0 else "", float(best_v[k, u]))
               for k, c in enumerate(categories)}
        k = int(best_v[:, u].argmax()) if categories else -1
        label, value = per[categories[k]] if k >= 0 else ("", 0.0)
        out.append(UnitConcept(u, label, categories[k] if k >= 0 else "", value,
                               float(thresholds[u]), float(errors[u]), value > min_iou, per))
    return tuple(out)


@dataclass(frozen=True)
class CategorySummary:
    """Of one category: units whose best label is in it (interpretable ones), and how many
    distinct labels they are."""

    interpretable: int
    unique: int


@dataclass(frozen=True)
class DissectionSummary:
    """The table NetDissect papers report for a layer: interpretable units and unique
    concepts, overall and by category (of each interpretable unit's best label)."""

    units: int
    interpretable: int
    unique: int
    by_category: dict[str, CategorySummary]

    def to_json(self) -> dict[str, Any]:
        return {"units": self.units, "interpretable": self.interpretable,
                "unique": self.unique,
                "by_category": {c: {"interpretable": v.interpretable, "unique": v.unique}
                                for c, v in self.by_category.items()}}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DissectionSummary:
        return cls(int(doc["units"]), int(doc["interpretable"]), int(doc["unique"]),
                   {c: CategorySummary(int(v["interpretable"]), int(v["unique"]))
                    for c, v in doc["by_category"].items()})


def summarize(units: tuple[UnitConcept, ...], categories: tuple[str, ...]
              ) -> DissectionSummary:
    """A layer's `DissectionSummary` from its units' concepts."""
    good = [u for u in units if u.interpretable]
    by = {c: CategorySummary(sum(u.category == c for u in good),
                             len({u.label for u in good if u.category == c}))
          for c in categories}
    return DissectionSummary(len(units), len(good),
                             len({(u.category, u.label) for u in good}), by)
