"""The building blocks of the live view, per frame: what one worker call computes.

One forward and one backward on the attributor's private copy give the channel and spatial
attribution and the frame's activation; the semantic dictionary is a sort of that activation,
the neuron groups a few HALS iterations started from the previous frame's groups (the first
frame of a layer starts cold with the full iteration count). Groups keep their order, hence
their colours, while the scene changes smoothly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from app.engine.analyses.blocks.dictionary import (
    DEFAULT_TOP,
    SemanticDictionary,
    semantic_dictionary,
)
from app.engine.analyses.blocks.groups import (
    DEFAULT_GROUPS,
    DEFAULT_ITERATIONS,
    NeuronGroups,
    neuron_groups,
)
from app.engine.analyses.blocks.layer_attribution import LayerAttribution, LayerAttributor
from app.engine.analyses.blocks.score import Score
from app.engine.runtime.models import LoadedModel

WARM_ITERATIONS = 20  # per frame once warm: the groups move little between frames


@dataclass(frozen=True)
class FrameBlocks:
    """One frame's building blocks at one layer."""

    attribution: LayerAttribution
    dictionary: SemanticDictionary | None
    groups: NeuronGroups | None
    attribution_ms: float  # the forward + backward
    blocks_ms: float  # dictionary and groups


class LiveBlocks:
    """Per-frame channel/spatial attribution, dictionary and warm-started neuron groups.

    Owned by one thread (the inference worker). `process` per frame; `reset` drops the
    warm start (a new scene, say). Examples::

        blocks = LiveBlocks(loaded)
        f = blocks.process(x, "_blocks.7", ClassScore(281))
        f.attribution.spatial, f.dictionary.at(3, 4), f.groups.spatial
    """

    def __init__(self, model: LoadedModel | nn.Module, groups: int = DEFAULT_GROUPS,
                 dictionary_top: int = DEFAULT_TOP, warm_iterations: int = WARM_ITERATIONS,
                 groups_budget_s: float | None = None, fast: bool = True) -> None:
        self.attributor = LayerAttributor(model, fast=fast)
        self.groups = groups
        self.dictionary_top = dictionary_top
        self.warm_iterations = warm_iterations
        self.groups_budget_s = groups_budget_s
        self._warm: tuple[str, NeuronGroups] | None = None

    def reset(self) -> None:
        self._warm = None

    def process(self, x: torch.Tensor, layer: str, score: Score, *, groups: bool = True,
                dictionary: bool = True) -> FrameBlocks:
        """The blocks of `layer` for a (1, 3, H, W) frame."""
        t0 = time.perf_counter()
        att = self.attributor.attribute(x, layer, score)
        t1 = time.perf_counter()
        words = semantic_dictionary(att.activations, self.dictionary_top) if dictionary else None
        found = None
        if groups:
            warm = self._warm[1] if self._warm is not None and self._warm[0] == layer else None
            found = neuron_groups(
                att.activations, self.groups, gradient=att.gradient, warm=warm,
                iterations=DEFAULT_ITERATIONS if warm is None else self.warm_iterations,
                budget_s=self.groups_budget_s)
            self._warm = (layer, found)
        t2 = time.perf_counter()
        return FrameBlocks(att, words, found, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
