"""`explain`: every building block of one layer for a list of images, as one job.

Per image: the linear attribution (one forward, one backward), the path-integrated one when
asked, the semantic dictionary, the neuron groups and the deletion test; the class is the
request's (or each image's top-1). With integration on, the channel and spatial attributions,
the groups' attributions and the deletion ranking all use the integrated ones. The job yields
a Progress per image and per batch of integration steps, and returns an `ExplainReport`,
which `deepvis explain --json` prints as it is (`to_json`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.jobs import Job, Progress
from app.engine.analyses.blocks.dictionary import (
    DEFAULT_TOP,
    SemanticDictionary,
    semantic_dictionary,
)
from app.engine.analyses.blocks.faithfulness import (
    DEFAULT_KS,
    DEFAULT_SEEDS,
    Faithfulness,
    faithfulness,
)
from app.engine.analyses.blocks.groups import DEFAULT_GROUPS, NeuronGroups, neuron_groups
from app.engine.analyses.blocks.integrated import IntegratedAttribution, integrated_job
from app.engine.analyses.blocks.layer_attribution import (
    LayerAttribution,
    LayerAttributor,
)
from app.engine.analyses.blocks.score import BlocksError, ClassScore
from app.engine.runtime.directions import DirectionLayer, is_direction_layer
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain: a layer, a class score, and the sizes of each block."""

    layer: str
    score: ClassScore = field(default_factory=ClassScore)  # default: each image's top-1
    groups: int = DEFAULT_GROUPS
    dictionary_top: int = DEFAULT_TOP
    integrated_steps: int = 0  # 0: the linear approximation only
    ks: tuple[int, ...] = DEFAULT_KS
    seeds: int = DEFAULT_SEEDS


@dataclass(frozen=True)
class Explanation:
    """The building blocks of one image at one layer."""

    image: str
    linear: LayerAttribution
    integrated: IntegratedAttribution | None
    dictionary: SemanticDictionary
    groups: NeuronGroups
    faithfulness: Faithfulness
    seconds: float

    @property
    def target(self) -> int:
        return self.faithfulness.target

    @property
    def channels(self) -> np.ndarray:
        """(C,) the attribution used: integrated when it was computed, else linear."""
        return (self.integrated or self.linear).channels

    @property
    def spatial(self) -> np.ndarray:
        """(H, W) the attribution used."""
        return (self.integrated or self.linear).spatial

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        """One image's entry of `deepvis explain --json`."""
        lin, integ, g, f = self.linear, self.integrated, self.groups, self.faithfulness
        order = np.argsort(-self.channels, kind="stable")
        doc: dict[str, Any] = {
            "image": self.image,
            "class": _class(self.target, class_names),
            "vs": None if lin.vs is None else _class(lin.vs, class_names),
            "score": _num(lin.score),
            "probability": _num(lin.probability),
            "method": "integrated" if integ else "linear",
            "channels": [{"unit": int(u), "attribution": _num(self.channels[u])} for u in order],
            "spatial": _nums(self.spatial),
            "dictionary": [[[{"unit": u, "value": _num(v)} for u, v in self.dictionary.at(y, x)]
                            for x in range(self.dictionary.units.shape[1])]
                           for y in range(self.dictionary.units.shape[0])],
            "groups": [{"channel_factor": _nums(g.channels[i]),
                        "spatial_factor": _nums(g.spatial[i]),
                        "attribution": None if g.attribution is None else _num(g.attribution[i])}
                       for i in range(g.k)],
            "groups_relative_error": _num(g.relative_error),
            "groups_positive_part": g.positive_part,
            "groups_note": g.note,
            "faithfulness": {
                "class": f.target, "k": list(f.ks), "intact": _num(f.intact),
                "top_deleted": _nums(np.asarray(f.top_deleted)),
                "random_deleted": _nums(np.asarray(f.random_deleted)),
                "random_std": _nums(np.asarray(f.random_std)), "seeds": f.seeds,
                "top_units": list(f.top_units),
            },
            "seconds": round(self.seconds, 3),
        }
        if is_direction_layer(lin.layer):  # the concepts plus this add up to the layer's
            doc["residual_attribution"] = _num(lin.residual)
        if integ is not None:
            doc["integrated"] = {"steps": integ.steps, "score": _num(integ.score),
                                 "baseline": _num(integ.baseline), "total": _num(integ.total),
                                 "gap": _num(integ.gap)}
        return doc


@dataclass(frozen=True)
class ExplainReport:
    """`explain_job`'s result: one Explanation per image."""

    model: str
    device: str
    layer: str
    shape: tuple[int, ...]  # (C, H, W) of the layer
    request: ExplainRequest
    class_names: tuple[str, ...]
    explanations: tuple[Explanation, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The document `deepvis explain --json` prints."""
        r = self.request
        return {
            "model": self.model, "device": self.device, "layer": self.layer,
            "shape": list(self.shape), "integrated_steps": r.integrated_steps,
            "groups_requested": r.groups, "dictionary_top": r.dictionary_top,
            "attribution": "activation × gradient of the score at the layer",
            "results": [e.to_json(self.class_names) for e in self.explanations],
            "seconds": round(self.seconds, 3),
        }


def explain_job(loaded: LoadedModel, images: Sequence[tuple[str, np.ndarray]],
                request: ExplainRequest, attributor: LayerAttributor | None = None,
                directions: Mapping[str, DirectionLayer] | None = None,
                ) -> Job[Progress, ExplainReport]:
    """Job: the building blocks of `request.layer` for each (name, (H, W, 3) uint8) image.

    A direction layer (`L@nmf32`, its set in `directions`) is explained in its units: act ×
    grad in concept space, the residual's share beside (`LayerAttribution.residual`)."""
    if request.groups < 1 or request.dictionary_top < 1 or request.integrated_steps < 0:
        raise BlocksError("groups and dictionary size must be positive, steps not negative")
    att = attributor or LayerAttributor(loaded)
    att.directions.update(directions or {})
    if request.integrated_steps and att.direction(request.layer) is not None:
        raise BlocksError("integrated gradients of a concept layer are not supported: "
                          "drop --integrated")
    t_all = time.perf_counter()
    per_image = 1 + request.integrated_steps
    total = len(images) * per_image
    out: list[Explanation] = []
    shape: tuple[int, ...] = ()
    yield Progress(0, total, f"explaining {request.layer}")
    for i, (name, image) in enumerate(images):
        t0 = time.perf_counter()
        x = prepare_batch([frame_to_tensor(image, loaded.device)], loaded.preprocess)
        lin = att.attribute(x, request.layer, request.score)
        shape = tuple(lin.activations.shape)
        if lin.target is None:
            raise BlocksError("explain needs a class score")
        score = ClassScore(lin.target, request.score.vs)
        integ = None
        if request.integrated_steps:
            job = integrated_job(att, x, request.layer, score, request.integrated_steps)
            try:
                while True:
                    step = next(job)
                    yield Progress(i * per_image + step.done, total, f"{name}: {step.text}")
            except StopIteration as stop:
                integ = stop.value
        used = integ or lin
        dictionary = semantic_dictionary(lin.activations, request.dictionary_top)
        groups = neuron_groups(lin.activations, request.groups, gradient=used.gradient)
        faith = faithfulness(att, x, request.layer, lin.target, used.channels, request.ks,
                             request.seeds)
        out.append(Explanation(name, lin, integ, dictionary, groups, faith,
                               time.perf_counter() - t0))
        yield Progress((i + 1) * per_image, total, f"explained {i + 1}/{len(images)}: {name}")
    return ExplainReport(loaded.name, str(loaded.device), request.layer, shape, request,
                         tuple(loaded.class_names), tuple(out), time.perf_counter() - t_all)


def _class(index: int, names: Sequence[str]) -> dict[str, Any]:
    return {"index": index, "label": names[index] if index < len(names) else str(index)}


def _num(v: float | np.floating) -> float | None:
    """A float for JSON, 6 significant digits; None for nan/inf (JSON has neither)."""
    f = float(v)
    return float(f"{f:.6g}") if np.isfinite(f) else None


def _nums(a: np.ndarray) -> Any:
    """An array as nested lists of `_num`s."""
    arr = np.asarray(a)
    if arr.ndim == 0:
        return _num(float(arr))
    return [_nums(row) for row in arr] if arr.ndim > 1 else [_num(v) for v in arr]
