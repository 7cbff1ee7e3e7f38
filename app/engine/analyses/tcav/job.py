"""`run_tcav`: the TCAV job — does class C depend on the concept, layer by layer?

Kim et al. 2018 (Testing with Concept Activation Vectors), as their code runs it:

1. A CAV per run: the concept's images against a random set (`cav`). Run i's random set is
   a seeded subset of random folder i mod R, as large as the concept folder (with a single
   folder, at most half of it, so that the null below has a disjoint second set).
2. The TCAV score of a CAV: the fraction of the `examples` (images of class C) whose class
   logit has a positive directional derivative along it (`passes.class_gradients`).
3. The null: run i also trains a random-vs-random CAV, its random set against another one
   (the next folder's subset; with one folder, a disjoint subset of the same), and scores it.
4. A two-sided t-test of the concept's scores against the null's (`stats.t_test`,
   Student's, as Kim et al.'s `ttest_ind`) gives each layer's p-value; Bonferroni over the
   layers decides `significant`: p < 0.05 / number of layers.

Costs: one forward to the highest layer for every image of the concept and the random sets
(skipped when every CAV is cached), one forward and backward per batch of examples for all
layers at once, and 2 × runs × layers tiny fits on the device.

CAVs are cached (`cav`'s store) under `<cache>/tcav/<model key>/<layer>/`, named by a key
of the model key, the layer, the method, the run and kind, and the fingerprints of the
exact files (paths, sizes, modification times) on each side: the same question asked
again refits nothing, and a changed file makes a new CAV, never a stale one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.core.files import files_fingerprint, list_images, safe_filename
from app.core.jobs import Job
from app.engine.analyses.tcav.cav import (
    METHODS,
    REGULARIZATION,
    TEST_FRACTION,
    Cav,
    load_cav,
    save_cav,
    train_cav,
)
from app.engine.analyses.tcav.passes import (
    FolderActivations,
    ImageSettings,
    TcavProgress,
    class_gradients,
    folder_activations,
)
from app.engine.analyses.tcav.stats import t_test
from app.engine.analyses.tcav.units import write_cav_units
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key
from app.engine.runtime.directions import DirectionSet
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import LOGITS, discover_layers

ALPHA = 0.05
KINDS = ("concept", "random")


class TcavError(ValueError):
    """A test that cannot run (missing or empty folder, unknown class or layer); one line."""


@dataclass(frozen=True)
class LayerScore:
    """One layer's answer. `cavs` (runs, C): the concept's unit CAVs; `random_cavs` the
    null's; `scores`/`random_scores`: their TCAV scores, run by run."""

    layer: str
    cav_accuracies: tuple[float, ...]
    scores: tuple[float, ...]
    random_scores: tuple[float, ...]
    p_value: float
    significant: bool
    cavs: np.ndarray = field(repr=False)
    random_cavs: np.ndarray = field(repr=False)

    @property
    def cav_accuracy(self) -> float:
        return float(np.mean(self.cav_accuracies))

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "cav_accuracy": self.cav_accuracy,
                "cav_accuracies": list(self.cav_accuracies), "score": self.score,
                "scores": list(self.scores), "random_scores": list(self.random_scores),
                "p_value": self.p_value, "significant": self.significant}


@dataclass(frozen=True)
class TcavResult:
    model: str
    target: int
    class_name: str
    method: str
    runs: int
    examples: int  # readable example images scored
    layers: tuple[LayerScore, ...]
    threshold: float  # the Bonferroni-corrected level: ALPHA / len(layers)
    cached_cavs: int  # of 2 × runs × layers
    skipped: tuple[tuple[str, str], ...]
    seconds: float
    # each layer's concept CAV as a one-unit direction layer (`units`), when it was stored
    directions: tuple[DirectionSet, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "class": self.target, "class_name": self.class_name,
                "method": self.method, "runs": self.runs, "examples": self.examples,
                "alpha": ALPHA, "threshold": self.threshold, "test": "Student's t, two-sided",
                "cached_cavs": self.cached_cavs, "seconds": round(self.seconds, 3),
                "layers": [s.to_json() for s in self.layers],
                "direction_layers": [d.name for d in self.directions],
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def resolve_class(loaded: LoadedModel, spec: str | int) -> int:
    """A class index from an index or a name of the model's (exact, else case-insensitive)."""
    names = loaded.class_names
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise TcavError(f"class {index} is out of range: {loaded.name} has "
                            f"{len(names)} classes (0 to {len(names) - 1})")
        return index
    if text in names:
        return names.index(text)
    folded = [i for i, n in enumerate(names) if n.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise TcavError(f"unknown class {text!r}: give an index or one of {loaded.name}'s "
                    "class names (see `deepvis predict`)")


def tcav_root(cache_dir: str, loaded: LoadedModel) -> Path:
    return cache_root(cache_dir) / "tcav" / model_key(loaded)


def _listing(folder: str | Path | Sequence[str], what: str) -> list[str]:
    if not isinstance(folder, str | Path):  # the files themselves (the audit's examples)
        if not folder:
            raise TcavError(f"no {what} images")
        return sorted(str(f) for f in folder)
    root = Path(folder).expanduser()
    if not root.exists():
        raise TcavError(f"{what} folder not found: {root}")
    files = list_images(root)
    if not files:
        raise TcavError(f"no images in the {what} folder {root} (looked for jpg, jpeg, png, "
                        "webp, bmp, tif, tiff)")
    return files


@dataclass(frozen=True)
class _Set:
    folder: int  # 0: the concept folder; r + 1: random folder r
    positions: tuple[int, ...]  # into that folder's listing


def _plan(n_concept: int, randoms: Sequence[int], runs: int, seed: int
          ) -> list[tuple[_Set, _Set]]:
    """Per run: (its random set, the null's second random set) (module doc)."""
    r = len(randoms)
    size = [min(n_concept, n // 2 if r == 1 else n) for n in randoms]
    plan = []
    for i in range(runs):
        f = i % r
        order = np.random.default_rng([seed, i]).permutation(randoms[f])
        first = _Set(f + 1, tuple(sorted(int(p) for p in order[:size[f]])))
        if r == 1:
            second = _Set(1, tuple(sorted(int(p) for p in order[size[0]:2 * size[0]])))
        else:
            g = (f + 1) % r
            other = np.random.default_rng([seed, i, 1]).permutation(randoms[g])
            second = _Set(g + 1, tuple(sorted(int(p) for p in other[:size[g]])))
        plan.append((first, second))
    return plan


def run_tcav(
    loaded: LoadedModel, concept: str | Path, randoms: Sequence[str | Path],
    examples: str | Path | Sequence[str], target: str | int, layers: Sequence[str], *,
    runs: int = 10,
    method: str = "logistic", seed: int = 0, batch_size: int = 16, cache_dir: str = "",
    out: str | Path | None = None, max_pixels: int = 80_000_000, max_side: int = 1280,
    units: bool = True,
) -> Job[TcavProgress, TcavResult]:
    """TCAV of `concept` for class `target` at each of `layers` (see the module doc).

    `randoms`: one folder (random subsets of it) or several (one per run, cycled);
    `examples`: a folder or a list of image files. CAVs
    go to the cache (`tcav_root`) or to `out` when given. With `units`, each layer's
    concept CAV is also stored as a direction layer `<layer>@cav-<concept>` (`units`).
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise TcavError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if runs < 2:
        raise TcavError(f"a t-test needs two runs at least, got --runs {runs}")
    if batch_size <= 0:
        raise TcavError("the batch size must be positive")
    if not layers:
        raise TcavError("name at least one layer")
    if not randoms:
        raise TcavError("name at least one random folder")
    concept_files = _listing(concept, "concept")
    random_files = [_listing(r, "random") for r in randoms]
    example_files = _listing(examples, "examples")
    index = resolve_class(loaded, target)
    infos, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    shapes = {i.name: i.shape for i in infos if i.name != LOGITS}
    layers = list(dict.fromkeys(layers))
    for layer in layers:
        if layer not in shapes:
            sample = ", ".join(list(shapes)[:6])
            raise TcavError(f"no layer named {layer!r} with a (C, H, W) output below the "
                            f"logits in {loaded.name} (e.g. {sample}; see `deepvis layers`)")
    if len(concept_files) < 2:
        raise TcavError("the concept folder needs two images at least")
    plan = _plan(len(concept_files), [len(f) for f in random_files], runs, seed)
    if any(len(s.positions) < 2 for pair in plan for s in pair):
        raise TcavError("a random folder is too small: each random set needs two images "
                        "(one folder alone: four at least, split in two)")
    listings = [concept_files, *random_files]
    s = ImageSettings(batch_size, max_pixels, max_side)

    # -- the CAVs in the cache, and what is left to fit -------------------------------------
    mkey = model_key(loaded)
    everything = _Set(0, tuple(range(len(concept_files))))
    pairs = {(kind, i): (everything, first) if kind == "concept" else (first, second)
             for i, (first, second) in enumerate(plan) for kind in KINDS}

    def names(layer: str, kind: str, i: int) -> str:
        pos, neg = pairs[(kind, i)]
        fp = [files_fingerprint([listings[x.folder][p] for p in x.positions]) for x in (pos, neg)]
        key = hashlib.sha256(json.dumps([
            CACHE_FORMAT, mkey, layer, method, kind, i, seed, fp, TEST_FRACTION,
            REGULARIZATION, max_side, max_pixels]).encode()).hexdigest()[:16]
        return f"{method}-{kind}{i}-{key}"

    base = Path(out) if out is not None else tcav_root(cache_dir, loaded)
    folders = {layer: base / safe_filename(layer) for layer in layers}
    cavs: dict[tuple[str, str, int], Cav] = {}
    for layer in layers:
        for kind, i in pairs:
            found = load_cav(folders[layer], names(layer, kind, i), int(shapes[layer][0]))
            if found is not None:
                cavs[(layer, kind, i)] = found
    cached = len(cavs)
    todo = [(layer, kind, i) for layer in layers for kind, i in pairs
            if (layer, kind, i) not in cavs]
    skipped: list[tuple[str, str]] = []

    if todo:
        acts = yield from _activations(loaded, listings, pairs, layers, clone, s)
        for a in acts.values():
            skipped += a.skipped
        for n, (layer, kind, i) in enumerate(todo):
            pos, neg = pairs[(kind, i)]
            p_rows = acts[pos.folder].of(layer, pos.positions)
            n_rows = acts[neg.folder].of(layer, neg.positions)
            if min(len(p_rows), len(n_rows)) < 2:
                raise TcavError("too few readable images: each set needs two at least")
            cav = train_cav(p_rows, n_rows, method, seed=hash_seed(seed, kind, i))
            save_cav(folders[layer], names(layer, kind, i), cav, {
                "layer": layer, "method": method, "kind": kind, "run": i,
                "model_key": mkey, "model": loaded.name,
                "positive": [listings[pos.folder][p] for p in pos.positions],
                "negative": [listings[neg.folder][p] for p in neg.positions]})
            cavs[(layer, kind, i)] = cav
            yield TcavProgress(done=n + 1, total=len(todo), stage="cavs")

    grads, kept, skipped_examples = yield from class_gradients(
        loaded, example_files, layers, index, s, 0, len(example_files))
    skipped += skipped_examples
    if not kept:
        raise TcavError("none of the example images could be read")
    results = []
    for layer in layers:
        per = {kind: [cavs[(layer, kind, i)] for i in range(runs)] for kind in KINDS}
        matrix = {kind: np.stack([c.vector for c in per[kind]]) for kind in KINDS}
        score = {kind: _scores(grads[layer], matrix[kind]) for kind in KINDS}
        test = t_test(score["concept"], score["random"])
        results.append(LayerScore(
            layer=layer, cav_accuracies=tuple(c.accuracy for c in per["concept"]),
            scores=tuple(score["concept"]), random_scores=tuple(score["random"]),
            p_value=test.p_value, significant=test.p_value < ALPHA / len(layers),
            cavs=matrix["concept"], random_cavs=matrix["random"]))
    stored: list[DirectionSet] = []
    for r in results if units else ():
        facts = {"class": index, "class_name": loaded.class_names[index], "method": method,
                 "score": r.score, "p_value": r.p_value, "significant": r.significant,
                 "cav_accuracy": r.cav_accuracy}
        unit_set = write_cav_units(cache_dir, mkey, concept, r.layer, r.cavs,
                                   [names(r.layer, "concept", i) for i in range(runs)], facts)
        if unit_set is not None:
            stored.append(unit_set)
    return TcavResult(
        model=loaded.name, target=index, class_name=loaded.class_names[index], method=method,
        runs=runs, examples=len(kept), layers=tuple(results), threshold=ALPHA / len(layers),
        cached_cavs=cached, skipped=tuple(sorted(set(skipped))),
        seconds=time.perf_counter() - started, directions=tuple(stored))


def hash_seed(seed: int, kind: str, run: int) -> int:
    """The split's seed of one CAV: distinct per run and kind, stable across processes."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{kind}/{run}".encode()).digest()[:4], "big")


def _scores(grads: torch.Tensor, cavs: np.ndarray) -> list[float]:
    """Per CAV: the fraction of images whose derivative along it is positive."""
    derivatives = grads.float() @ torch.as_tensor(cavs, device=grads.device).T  # (n, runs)
    return [int(v) / len(grads) for v in (derivatives > 0).sum(0).cpu()]


def _activations(loaded: LoadedModel, listings: list[list[str]],
                 pairs: dict[tuple[str, int], tuple[_Set, _Set]], layers: list[str],
                 clone: set[str], s: ImageSettings
                 ) -> Job[TcavProgress, dict[int, FolderActivations]]:
    """The activations of every image some CAV needs, folder by folder (one pass each)."""
    needed: dict[int, set[int]] = {}
    for pos, neg in pairs.values():
        for x in (pos, neg):
            needed.setdefault(x.folder, set()).update(x.positions)
    total = sum(len(v) for v in needed.values())
    done, out = 0, {}
    for folder in sorted(needed):
        positions = sorted(needed[folder])
        got = yield from folder_activations(
            loaded, [listings[folder][p] for p in positions], layers, clone, s,
            "activations", done, total)
        # back to positions in the folder's own listing
        out[folder] = FolderActivations(tuple(positions[k] for k in got.kept), got.rows,
                                        got.skipped)
        done += len(positions)
    return out
