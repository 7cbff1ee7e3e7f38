"""What a dissection returns: per layer the units' concepts and a summary; JSON both ways."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.analyses.dissection.scoring import DissectionSummary, UnitConcept

DISSECT_FORMAT = 1  # bump when the result document or the stored tallies change layout


@dataclass(frozen=True)
class LayerDissection:
    """One layer: every unit's concept (unit order) and the summary table."""

    layer: str
    units: tuple[UnitConcept, ...]
    summary: DissectionSummary
    folder: str  # where its tallies and top-image strips are

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "folder": self.folder, "summary": self.summary.to_json(),
                "units": [u.to_json() for u in self.units]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LayerDissection:
        return cls(doc["layer"], tuple(UnitConcept.from_json(u) for u in doc["units"]),
                   DissectionSummary.from_json(doc["summary"]), doc["folder"])


@dataclass(frozen=True)
class DissectionResult:
    """A finished dissection of some layers on one concept dataset."""

    model: str
    dataset: str
    kind: str  # broden | simple | colour
    categories: tuple[str, ...]
    quantile: float
    min_iou: float
    images: int  # images tallied
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    layers: dict[str, LayerDissection]
    folder: str
    seconds: float
    images_per_s: float = 0.0  # over both passes, of what was computed now
    cached: bool = False  # every layer came from an identical earlier dissection
    resumed: bool = False
    threshold_bins: int = 4096
    # where a resumed run took up: (pass 1 or 2, images of that pass done before), else (0, 0)
    resumed_at: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The document `deepvis dissect --json` prints and `result.json` holds."""
        doc = {"format": DISSECT_FORMAT, "model": self.model, "dataset": self.dataset,
               "kind": self.kind, "categories": list(self.categories),
               "quantile": self.quantile, "min_iou": self.min_iou, "images": self.images,
               "skipped": [list(s) for s in self.skipped], "folder": self.folder,
               "seconds": round(self.seconds, 3), "images_per_s": round(self.images_per_s, 2),
               "cached": self.cached, "resumed": self.resumed,
               "resumed_at": {"pass": self.resumed_at[0], "images": self.resumed_at[1]},
               "threshold": {"method": "per-unit power-of-two histogram, "
                             f"{self.threshold_bins} bins", "error_bound": "one bin width, "
                             "≤ 2·(max − min)/(bins − 1); per unit as threshold_error"},
               "layers": {name: lay.to_json() for name, lay in self.layers.items()}}
        doc.update(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DissectionResult:
        known = {"format", "model", "dataset", "kind", "categories", "quantile", "min_iou",
                 "images", "skipped", "folder", "seconds", "images_per_s", "cached",
                 "resumed", "resumed_at", "threshold", "layers"}
        return cls(doc["model"], doc["dataset"], doc["kind"], tuple(doc["categories"]),
                   float(doc["quantile"]), float(doc["min_iou"]), int(doc["images"]),
                   tuple((str(p), str(r)) for p, r in doc["skipped"]),
                   {n: LayerDissection.from_json(v) for n, v in doc["layers"].items()},
                   doc["folder"], float(doc["seconds"]), float(doc["images_per_s"]),
                   bool(doc["cached"]), bool(doc["resumed"]),
                   resumed_at=_resumed_at(doc.get("resumed_at")),
                   extra={k: v for k, v in doc.items() if k not in known})


def _resumed_at(doc: Any) -> tuple[int, int]:
    return (int(doc["pass"]), int(doc["images"])) if isinstance(doc, dict) else (0, 0)


def cached_layer(model_folder: str | Path, layer: str
                 ) -> tuple[DissectionResult, LayerDissection] | None:
    """The newest finished dissection of `layer` under one model's cache folder
    (`cache_root/model_key`), on whatever dataset it was made; None if there is none.

    The window and the catalogue have no dataset in hand: like the ablation curves, they
    show what the newest `deepvis dissect` (or the window's own run) left for this model.
    """
    base = Path(model_folder) / "dissect"
    if not base.is_dir():
        return None
    docs = sorted(base.glob("*/result.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in docs:
        try:
            result = DissectionResult.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # torn or of an older format: the next one may do
        if layer in result.layers:
            return result, result.layers[layer]
    return None


def concept_text(unit: UnitConcept) -> str:
    """"red (color), IoU 0.12": a unit's label as the window and the pages show it."""
    return f"{unit.label} ({unit.category}), IoU {unit.iou:.3f}"
