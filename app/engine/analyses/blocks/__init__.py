"""The building blocks of interpretability (Olah et al. 2018), for any model and layer.

- `LayerAttributor`: a class score (or class A vs B) attributed to a layer's units, as
  activation × gradient; channel and spatial attribution from one forward + one backward,
- `integrated_job` / `integrated`: the path-integrated variant (N steps from zero; complete),
- `semantic_dictionary`: the top channels at each position,
- `neuron_groups`: NMF of a frame's activations into k groups, warm-startable,
- `faithfulness`: the class probability with the top attributed vs random channels deleted,
- `LiveBlocks`: what the live worker computes per frame,
- `explain_job`: all of it for a list of images (`deepvis explain`).
"""

from app.engine.analyses.blocks.dictionary import SemanticDictionary, semantic_dictionary
from app.engine.analyses.blocks.explain import (
    ExplainReport,
    ExplainRequest,
    Explanation,
    explain_job,
)
from app.engine.analyses.blocks.faithfulness import Faithfulness, faithfulness
from app.engine.analyses.blocks.groups import NeuronGroups, neuron_groups
from app.engine.analyses.blocks.integrated import (
    IntegratedAttribution,
    integrated,
    integrated_job,
)
from app.engine.analyses.blocks.layer_attribution import (
    BlocksError,
    LayerAttribution,
    LayerAttributor,
    class_probability,
)
from app.engine.analyses.blocks.per_frame import FrameBlocks, LiveBlocks
from app.engine.analyses.blocks.score import ClassScore, Score, class_score, output_logits

__all__ = [
    "BlocksError", "ClassScore", "ExplainReport", "ExplainRequest", "Explanation",
    "Faithfulness", "FrameBlocks", "IntegratedAttribution", "LayerAttribution",
    "LayerAttributor", "LiveBlocks", "NeuronGroups", "Score", "SemanticDictionary",
    "class_probability", "class_score", "explain_job", "faithfulness", "integrated",
    "integrated_job", "neuron_groups", "output_logits", "semantic_dictionary",
]
