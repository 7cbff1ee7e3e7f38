"""Deleting units: live `Ablation`, `layer_curves` on a folder (a job), `predict_ablated`."""

from app.engine.analyses.ablation.class_units import ClassUnitsResult, class_units
from app.engine.analyses.ablation.curves import CurveResult, layer_curves
from app.engine.analyses.ablation.datasets import find_dataset
from app.engine.analyses.ablation.deletion import (
    Ablation,
    AblationError,
    ForkError,
    RunningChannelMeans,
    fork_safe,
    parse_ablation,
    parse_ablations,
)
from app.engine.analyses.ablation.predict import AblatedPrediction, predict_ablated

__all__ = [
    "AblatedPrediction", "Ablation", "AblationError", "ClassUnitsResult", "CurveResult",
    "ForkError", "RunningChannelMeans", "class_units", "find_dataset", "fork_safe",
    "layer_curves", "parse_ablation", "parse_ablations", "predict_ablated",
]
