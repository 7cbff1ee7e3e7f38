"""The live view's concept layers: learned dictionaries shown, hovered and deleted as units.

A concept layer (`_blocks.11@nmf32`) is not a module: its K maps are the codes of its source
layer's recorded activation on the dictionary, computed on the device after the pass (NNLS
for NMF, the encoder for an SAE; `ConceptLayer.codes`). So showing one costs the codes of one
map, not a forward, and every per-unit view (grid, hover, unit map, live top-k) takes it as
it takes a layer's channels.

Deleting concepts edits the source layer's output in the pass: a forward hook put before the
recorder's (`prepend`) returns `ConceptLayer.delete(out, concepts)`, the activation minus the
deleted concepts' components and nothing else, so the grid, the recorded maps and the
predictions are those of the edited network. The hooks are set from the worker's thread only
(the deletion stage, from the view).

Dictionaries come from the cache (every complete one of this model, newest first when two
make the same layer name) and from learning jobs that end while the view runs (`add`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.core.messages import LayerInfo
from app.engine.analyses.concepts import ConceptDictionary, ConceptLayer, load_dictionary
from app.engine.runtime.cache import cache_root, model_key
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import ActivationRecorder

log = logging.getLogger(__name__)

CONCEPTS_KIND = "concepts"  # LayerInfo.kind of a concept layer


def cached_dictionaries(cache_dir: str, loaded: LoadedModel) -> list[ConceptDictionary]:
    """Every complete dictionary of `loaded` in the cache, newest first."""
    base = cache_root(cache_dir) / "concepts" / model_key(loaded)
    metas = sorted(base.glob("*/*/meta.json"), key=_mtime, reverse=True)
    found = (load_dictionary(m.parent) for m in metas)
    return [d for d in found if d is not None]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def with_concepts(base: Sequence[LayerInfo], concepts: Sequence[LayerInfo],
                  sources: Mapping[str, str]) -> tuple[LayerInfo, ...]:
    """`base` with each concept layer right after its source layer (in `concepts` order)."""
    out: list[LayerInfo] = []
    for info in base:
        out.append(info)
        out.extend(c for c in concepts if sources[c.name] == info.name)
    return tuple(out)


class ConceptLayers:
    """The processor's concept layers: their dictionaries on the device, codes, deletion."""

    def __init__(self, loaded: LoadedModel, base: Sequence[LayerInfo]) -> None:
        self.loaded = loaded
        self.base = {info.name: info for info in base}
        self.layers: dict[str, ConceptLayer] = {}
        self.infos: dict[str, LayerInfo] = {}
        self._modules = dict(loaded.module.named_modules())
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._deleted: dict[str, tuple[int, ...]] = {}
        self._paused = False
        # the last codes and the source map they came from: a re-render of a still image
        # (a click, a key) records the same map, and the codes are the frame's dearest part
        self._last: tuple[str, torch.Tensor, torch.Tensor] | None = None

    def add(self, dictionary: ConceptDictionary) -> LayerInfo | None:
        """Make `dictionary` a layer (replacing one of the same name); None when its source
        layer is not a (C, H, W) layer of this model with its channels."""
        source = self.base.get(dictionary.source_layer)
        if source is None or source.shape[0] != dictionary.channels or len(source.shape) != 3:
            return None
        name = dictionary.concept_layer
        self.layers[name] = ConceptLayer(dictionary, self.loaded.device)
        self._last = None
        info = LayerInfo(name, (dictionary.k, *source.shape[1:]), CONCEPTS_KIND, source.layout)
        self.infos[name] = info
        return info

    def load_cached(self, cache_dir: str) -> None:
        for dictionary in reversed(cached_dictionaries(cache_dir, self.loaded)):
            self.add(dictionary)  # oldest first, so the newest of one name stays

    def source_of(self, layer: str) -> str:
        """The layer whose activation `layer` is computed from (itself for a plain layer)."""
        concept = self.layers.get(layer)
        return layer if concept is None else concept.dictionary.source_layer

    def names(self, layer: str) -> tuple[str, ...]:
        concept = self.layers.get(layer)
        return () if concept is None else concept.dictionary.names

    def listed(self, base: Sequence[LayerInfo]) -> tuple[LayerInfo, ...]:
        sources = {n: c.dictionary.source_layer for n, c in self.layers.items()}
        return with_concepts(base, list(self.infos.values()), sources)

    def codes(self, layer: str, recorder: ActivationRecorder) -> torch.Tensor:
        """(K, H, W) codes of the source layer's recorded activation (as the net received it)."""
        concept = self.layers[layer]
        source = recorder.activations[concept.dictionary.source_layer][-1]
        last = self._last
        if (last is not None and last[0] == layer and last[1].shape == source.shape
                and torch.equal(last[1], source)):
            return last[2]
        codes = concept.codes(source)
        self._last = (layer, source.detach().clone(), codes)
        return codes

    # -- deletion ------------------------------------------------------------------------
    def set_deleted(self, deleted: Mapping[str, Sequence[int]]) -> None:
        """Hook the source layers so that these concepts are gone from the pass."""
        wanted = {n: tuple(sorted({u for u in units if 0 <= u < self.layers[n].h.shape[0]}))
                  for n, units in deleted.items() if n in self.layers}
        wanted = {n: u for n, u in wanted.items() if u}
        if wanted == self._deleted:
            return
        self.remove_hooks()
        for name, units in wanted.items():
            concept = self.layers[name]
            module = self._modules.get(concept.dictionary.source_layer)
            if module is None:
                log.info("no module %s to delete concepts of %s in", concept, name)
                continue
            self._hooks.append(module.register_forward_hook(
                self._deleter(concept, units), prepend=True))
        self._deleted = wanted

    @property
    def deleted(self) -> dict[str, tuple[int, ...]]:
        return dict(self._deleted)

    def _deleter(self, concept: ConceptLayer, units: tuple[int, ...]) -> Any:
        def hook(_m: nn.Module, _inputs: Any, out: Any) -> Any:
            if self._paused or not isinstance(out, torch.Tensor) or out.dim() != 4:
                return None
            return concept.delete(out, units)
        return hook

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The intact network: no concept deleted inside."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self._deleted = {}
