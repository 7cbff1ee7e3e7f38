"""Network dissection: name what each unit detects (`dissect`, a job), offline.

Concept datasets are found in the folder (`find_concepts`: Broden, simple masks, or the
built-in colour concepts of any image folder); the algorithm is NetDissect's, streamed.
"""

from app.engine.analyses.dissection.colours import COLOUR_NAMES, colour_index
from app.engine.analyses.dissection.concepts import Concepts, DissectionError, find_concepts
from app.engine.analyses.dissection.job import dissect, load_result
from app.engine.analyses.dissection.result import (
    DissectionResult,
    LayerDissection,
    cached_layer,
    concept_text,
)
from app.engine.analyses.dissection.scoring import (
    CategorySummary,
    DissectionSummary,
    UnitConcept,
)
from app.engine.analyses.dissection.sketch import QuantileSketch

__all__ = [
    "COLOUR_NAMES",
    "CategorySummary",
    "Concepts",
    "DissectionError",
    "DissectionResult",
    "DissectionSummary",
    "LayerDissection",
    "QuantileSketch",
    "UnitConcept",
    "cached_layer",
    "colour_index",
    "concept_text",
    "dissect",
    "find_concepts",
    "load_result",
]
