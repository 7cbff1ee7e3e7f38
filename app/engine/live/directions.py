"""The live view's direction layers: learned concepts, CAVs and atlas cells shown, hovered
and deleted as units.

A direction layer (`_blocks.11@nmf32`, `_blocks.11@cav-stripes`, `_blocks.11@atlas20`) is
not a module: its K maps are the codes of its source layer's recorded activation on its
directions, computed on the device after the pass (`DirectionLayer.codes` in the runtime:
NNLS for NMF, the encoder for an SAE, dot products for linear sets). So showing one costs
the codes of one map, not a forward, and every per-unit view (grid, hover, unit map, live
top-k) takes it as it takes a layer's channels.

Whoever writes a direction set (the concept dictionaries, TCAV, the atlas) writes it with
the runtime's `write_direction_set`; this module is the only place the live view learns
about them: every complete set of the model in the cache when the worker starts
(`direction_sets`), and each set a job hands over while the view runs (`add`). A new kind of
direction therefore reaches every live view without touching a stage.

Deleting units of a direction layer is the deletion stage's: its `Ablation` takes these
layers and edits their source's output in the pass (`DirectionLayer.delete`: the activation
minus the deleted units' components and nothing else), as it deletes channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from app.core.messages import LayerInfo
from app.engine.runtime.directions import (
    DIRECTION_KIND,
    DirectionLayer,
    DirectionSet,
    model_direction_sets,
)
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import ActivationRecorder


def with_directions(base: Sequence[LayerInfo], added: Sequence[LayerInfo],
                    sources: Mapping[str, str]) -> tuple[LayerInfo, ...]:
    """`base` with each direction layer right after its source layer (in `added` order)."""
    out: list[LayerInfo] = []
    for info in base:
        out.append(info)
        out.extend(c for c in added if sources[c.name] == info.name)
    return tuple(out)


class DirectionLayers:
    """The processor's direction layers: their sets on the device, codes, deletion."""

    def __init__(self, loaded: LoadedModel, base: Sequence[LayerInfo]) -> None:
        self.loaded = loaded
        self.base = {info.name: info for info in base}
        self.layers: dict[str, DirectionLayer] = {}
        self.infos: dict[str, LayerInfo] = {}
        # the last codes and the source map they came from: a re-render of a still image
        # (a click, a key) records the same map, and the codes are the frame's dearest part
        self._last: tuple[str, torch.Tensor, torch.Tensor] | None = None

    def add(self, directions: DirectionSet) -> LayerInfo | None:
        """Make `directions` a layer (replacing one of the same name); None when its source
        layer is not a (C, H, W) layer of this model with its channels."""
        source = self.base.get(directions.source)
        if source is None or source.shape[0] != directions.channels or len(source.shape) != 3:
            return None
        name = directions.name
        self.layers[name] = DirectionLayer(directions, self.loaded.device)
        self._last = None
        info = LayerInfo(name, (directions.k, *source.shape[1:]), DIRECTION_KIND, source.layout)
        self.infos[name] = info
        return info

    def load_cached(self, cache_dir: str) -> None:
        """Every complete set of this model in the cache (the newest of each name)."""
        for directions in model_direction_sets(self.loaded, cache_dir).values():
            self.add(directions)

    def source_of(self, layer: str) -> str:
        """The layer whose activation `layer` is computed from (itself for a plain layer)."""
        found = self.layers.get(layer)
        return layer if found is None else found.set.source

    def names(self, layer: str) -> tuple[str, ...]:
        found = self.layers.get(layer)
        return () if found is None else found.set.names

    def listed(self, base: Sequence[LayerInfo]) -> tuple[LayerInfo, ...]:
        sources = {n: d.set.source for n, d in self.layers.items()}
        return with_directions(base, list(self.infos.values()), sources)

    def codes(self, layer: str, recorder: ActivationRecorder) -> torch.Tensor:
        """(K, H, W) codes of the source layer's recorded activation (as the net received it)."""
        found = self.layers[layer]
        source = recorder.activations[found.set.source][-1]
        last = self._last
        if (last is not None and last[0] == layer and last[1].shape == source.shape
                and torch.equal(last[1], source)):
            return last[2]
        codes = found.codes(source)
        self._last = (layer, source.detach().clone(), codes)
        return codes
