"""Concept dictionaries: K directions of a layer learned from a folder (`learn_concepts`, a job).

NMF (CRAFT, Building Blocks) on the layer's positive part for small K, a TopK sparse
autoencoder for large K and token layers. A dictionary makes a concept layer
(`ConceptLayer`): at each position, the nonnegative codes of the activation on the
directions, plus the residual, adding up to the layer (see `layer`'s notes).
"""

from app.engine.analyses.concepts.job import (
    ConceptsError,
    concepts_root,
    default_active,
    learn_concepts,
)
from app.engine.analyses.concepts.layer import (
    METHODS,
    ConceptDictionary,
    ConceptLayer,
    Decomposition,
    concept_layer_name,
)
from app.engine.analyses.concepts.nmf import NMFFit, nnls_codes
from app.engine.analyses.concepts.sae import SAEFit
from app.engine.analyses.concepts.samples import ConceptProgress
from app.engine.analyses.concepts.store import load_dictionary, rename_concept

__all__ = [
    "METHODS",
    "ConceptDictionary",
    "ConceptLayer",
    "ConceptProgress",
    "ConceptsError",
    "Decomposition",
    "NMFFit",
    "SAEFit",
    "concept_layer_name",
    "concepts_root",
    "default_active",
    "learn_concepts",
    "load_dictionary",
    "nnls_codes",
    "rename_concept",
]
