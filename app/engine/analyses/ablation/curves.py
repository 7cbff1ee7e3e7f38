"""Ablation curves: accuracy as more and more units of one layer are deleted.

Each deletion level runs only the layers above the ablated layer where the network can be
cut there (`cut`), else the whole network (the result says which).

Two passes over the data: the first records the intact predictions and each unit's spatial
mean activation (for the class selectivity that orders the deletions); the second runs all
levels of all orders, each distinct set of deleted units once per batch. Values alive at the
cut are kept in memory between the passes when they fit `cache_bytes`; otherwise the second
pass decodes the images and runs the prefix again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.core.atomic import cache_write_json
from app.core.files import files_fingerprint, safe_filename
from app.core.jobs import Job, Progress
from app.core.selectivity import class_selectivity, deletion_counts, deletion_orders
from app.engine.analyses.ablation.cut import make_runner
from app.engine.analyses.ablation.datasets import Dataset, ImageBatches
from app.engine.analyses.ablation.deletion import AblationError
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key, writable_cache
from app.engine.runtime.directions import (
    DirectionLayer,
    UnknownDirectionLayer,
    direction_layers,
)
from app.engine.runtime.distributed import Ranks, failing_together
from app.engine.runtime.models import LoadedModel

ABLATE_FORMAT = 1  # bump when the cached document's layout changes

# -- the curves ----------------------------------------------------------------------------

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor | None]]]


@dataclass(frozen=True)
class CurveResult:
    """The curves of one layer: accuracy at each deleted fraction, per deletion order."""

    layer: str
    units: int
    images: int
    labeled: bool
    method: str
    note: str
    fractions: list[float]
    deleted: list[int]
    intact_accuracy: float
    curves: dict[str, list[float]]  # order name → accuracy at each point
    selectivity: list[float]
    preferred_class: list[int]
    selectivity_shifted: int
    classes: int
    seeds: int
    levels: int  # distinct sets of deleted units evaluated per image
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    # where it ran and on what (set by `layer_curves`), and whether it came from the cache
    model: str = ""
    device: str = ""
    dataset: str = ""
    class_folders: dict[str, int] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    cached: bool = False
    cache_file: str = ""

    def random_curves(self) -> np.ndarray:
        """(seeds, points) accuracy of the random deletion orders."""
        return np.asarray([self.curves[f"random_{s}"] for s in range(self.seeds)], np.float64)

    def to_json(self) -> dict[str, Any]:
        """The document `deepvis ablate --json` prints and the cache stores."""
        arr = self.random_curves()
        seeds = arr.tolist()
        doc: dict[str, Any] = {
            "format": ABLATE_FORMAT, "layer": self.layer, "units": self.units,
            "images": self.images,
            "labels": "folders" if self.labeled else "intact_top1",
            "accuracy_means": self.accuracy_means,
            "method": self.method, "method_note": self.note,
            "fractions": self.fractions, "deleted": self.deleted,
            "intact_accuracy": self.intact_accuracy,
            "curves": {
                "random": {"mean": arr.mean(0).tolist(), "std": arr.std(0).tolist(),
                           "seeds": seeds},
                "selectivity_high_to_low": self.curves["selectivity_high_to_low"],
                "selectivity_low_to_high": self.curves["selectivity_low_to_high"],
            },
            "selectivity": {
                "index": self.selectivity, "preferred_class": self.preferred_class,
                "classes": self.classes, "shifted_units": self.selectivity_shifted,
                "activation": "spatial mean of the layer's output per image",
            },
            "levels_per_image": self.levels, "seconds": round(self.seconds, 3),
        }
        doc.update(self.extra)
        doc.update(model=self.model, device=self.device, dataset=self.dataset,
                   class_folders=self.class_folders, skipped=list(self.skipped),
                   cached=self.cached, cache_file=self.cache_file)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CurveResult:
        """Read back what `to_json` wrote (the cache file); KeyError/TypeError if malformed."""
        c, sel = doc["curves"], doc["selectivity"]
        curves = {f"random_{s}": list(v) for s, v in enumerate(c["random"]["seeds"])}
        curves["selectivity_high_to_low"] = list(c["selectivity_high_to_low"])
        curves["selectivity_low_to_high"] = list(c["selectivity_low_to_high"])
        known = {"format", "layer", "units", "images", "labels", "accuracy_means", "method",
                 "method_note", "fractions", "deleted", "intact_accuracy", "curves",
                 "selectivity", "levels_per_image", "seconds", "model", "device", "dataset",
                 "class_folders", "skipped", "cached", "cache_file"}
        return cls(
            layer=doc["layer"], units=int(doc["units"]), images=int(doc["images"]),
            labeled=doc["labels"] == "folders", method=doc["method"],
            note=doc["method_note"], fractions=list(doc["fractions"]),
            deleted=list(doc["deleted"]), intact_accuracy=float(doc["intact_accuracy"]),
            curves=curves, selectivity=list(sel["index"]),
            preferred_class=list(sel["preferred_class"]),
            selectivity_shifted=int(sel["shifted_units"]), classes=int(sel["classes"]),
            seeds=len(c["random"]["seeds"]), levels=int(doc["levels_per_image"]),
            seconds=float(doc["seconds"]),
            extra={k: v for k, v in doc.items() if k not in known},
            model=doc.get("model", ""), device=doc.get("device", ""),
            dataset=doc.get("dataset", ""), class_folders=dict(doc.get("class_folders", {})),
            skipped=tuple(doc.get("skipped", ())), cache_file=doc.get("cache_file", ""))

    @property
    def accuracy_means(self) -> str:
        return ("top-1 accuracy" if self.labeled
                else "agreement with the intact network's top-1")


def _step(stage: str, done: int, total: int) -> Progress:
    return Progress(done, max(total, 1), f"{stage}: {done} / {total} images")


def _spatial_mean(t: torch.Tensor) -> torch.Tensor:
    return t.float().flatten(2).mean(2) if t.dim() > 2 else t.float()


@torch.no_grad()
def ablation_curves(
    model: nn.Module,
    batches: Batches,
    layer: str,
    *,
    total: int,
    seeds: int = 3,
    points: int = 11,
    method: str = "auto",
    cache_bytes: int = 1 << 30,
    ranks: Ranks | None = None,
    order: Callable[[], list[int]] | None = None,
    directions: DirectionLayer | None = None,
) -> Job[Progress, CurveResult]:
    """Accuracy vs. fraction of `layer`'s units deleted, in random and selectivity orders.

    `batches()` yields (x (N, 3, H, W) normalized, labels (N,) or None) and may be called
    twice; `total` is the number of images it yields (for progress). A job: it yields a
    `Progress` per batch and returns the `CurveResult`. Without labels the
    accuracy is agreement with the intact network's top-1, and the selectivity classes are
    the intact top-1 classes.

    With `ranks` (torchrun) `batches` are this rank's and `order()` the position in the
    whole dataset of each image the last call yielded: rank 0 puts the first pass's
    activations back in dataset order (the selectivity of one process, bit for bit) and
    sends every rank the deletion plan; the second pass's counts are summed over ranks.
    """
    t0 = time.perf_counter()
    runner: Any = None
    note = ""
    kept: list[tuple[Any, int]] | None = []
    kept_bytes = 0
    acts: list[np.ndarray] = []
    intact: list[torch.Tensor] = []
    labels: list[torch.Tensor] | None = []
    done = 0
    yield _step("intact pass", 0, total)
    for x, y in batches():
        if runner is None:
            runner, note = make_runner(model, layer, method, probe=x, directions=directions)
        state, out_l, logits = runner.intact(x)
        acts.append(_spatial_mean(out_l).cpu().numpy().astype(np.float64))
        intact.append(logits.argmax(1))
        if labels is not None and y is not None:
            labels.append(y.to(x.device))
        else:
            labels = None
        if kept is not None:
            kept_bytes += runner.nbytes(state)
            if kept_bytes <= cache_bytes:
                kept.append((state, x.shape[0]))
            else:
                kept = None
        done += x.shape[0]
        yield _step("intact pass", done, total)
    if ranks is None and runner is None:
        raise AblationError("no images to ablate")
    device = next(model.parameters()).device
    intact_top1 = torch.cat(intact) if intact else torch.zeros(0, dtype=torch.long)
    targets = (torch.cat(labels) if labels else intact_top1).to(device)
    labeled = labels is not None
    if ranks is None:
        activations = np.concatenate(acts)
        shared = _plan(activations, targets.cpu().numpy(), seeds, points)
        ndim, method_used = out_l.dim(), runner.method
        all_top1, all_targets = intact_top1.cpu(), targets.cpu()
    else:
        assert order is not None, "a rank's batches come with their dataset positions"
        mine = (np.concatenate(acts) if acts else None, intact_top1.cpu(),
                targets.cpu(), order(), labeled,
                None if runner is None else (out_l.dim(), runner.method, note))
        shared, (ndim, method_used, note), labeled, all_top1, all_targets = _merge_intact(
            ranks, mine, seeds, points)
    counts, keys, plan, index, preferred, shifted, n_classes, extra = shared
    units = len(index)
    masks = torch.zeros(len(keys), units, dtype=torch.bool)
    for key, i in keys.items():
        masks[i, list(key)] = True
    masks = masks.view(len(keys), 1, units, *([1] * (ndim - 2))).to(device)
    correct = torch.zeros(len(keys), dtype=torch.long, device=device)

    def second_pass() -> Iterator[tuple[Any, int]]:
        if kept is not None:
            yield from kept
        else:
            for x, _ in batches():
                yield runner.prepare(x), x.shape[0]

    done = 0
    start = 0
    yield _step("ablation pass", 0, total)
    for state, n in second_pass():
        want = targets[start : start + n]
        for i in range(len(keys)):
            # the intact pass has learned which cached values need cloning: no _Redo here
            logits = runner.run(state, masks[i])
            correct[i] += (logits.argmax(1) == want).sum()
        start += n
        done += n
        yield _step("ablation pass", done, total)
    if ranks is not None:  # integer counts: the sum over ranks is exact
        correct = ranks.sum(correct)
        start = int(ranks.sum(torch.tensor([start]))[0])
    acc = (correct.double() / start).cpu().tolist()
    curves = {name: [acc[i] for i in idx] for name, idx in plan.items()}
    return CurveResult(
        layer=layer, units=units, images=start, labeled=labeled,
        method=method_used, note=note,
        fractions=[k / units for k in counts], deleted=counts,
        intact_accuracy=float((all_top1 == all_targets).double().mean()),
        curves=curves, selectivity=index.tolist(),
        preferred_class=[int(c) for c in preferred],
        selectivity_shifted=shifted, classes=n_classes, seeds=seeds,
        levels=len(keys), seconds=time.perf_counter() - t0, extra=extra,
    )


Plan = tuple[list[int], dict[tuple[int, ...], int], dict[str, list[int]], np.ndarray,
             np.ndarray, int, int, dict[str, Any]]


def _plan(activations: np.ndarray, sel_labels: np.ndarray, seeds: int, points: int) -> Plan:
    """(counts, level keys, plan, selectivity, preferred, shifted, classes, extra): the
    deletion levels of every order, from the first pass over the whole dataset."""
    units = activations.shape[1]
    extra: dict[str, Any] = {}
    if len(np.unique(sel_labels)) >= 2:
        sel = class_selectivity(activations, sel_labels)
        index, preferred = sel.index, sel.preferred
        shifted, n_classes = int(sel.shifted.sum()), len(sel.classes)
    else:  # every image in one class: selectivity is undefined, the random curves are not
        index, preferred = np.zeros(units), np.full(units, int(sel_labels[0]))
        shifted, n_classes = 0, 1
        extra["selectivity_note"] = ("all images are of one class: the index is undefined "
                                     "(reported as 0) and the selectivity orders are unit order")
    counts = deletion_counts(units, points)
    orders = deletion_orders(index, seeds)
    keys: dict[tuple[int, ...], int] = {}
    plan: dict[str, list[int]] = {}
    for name, order in orders.items():
        plan[name] = []
        for k in counts:
            key = tuple(sorted(int(u) for u in order[:k]))
            plan[name].append(keys.setdefault(key, len(keys)))
    return counts, keys, plan, index, preferred, shifted, n_classes, extra


def _merge_intact(ranks: Ranks, mine: tuple[Any, ...], seeds: int, points: int
                  ) -> tuple[Plan, tuple[int, str, str], bool, torch.Tensor, torch.Tensor]:
    """The first pass of every rank, in dataset order on rank 0, and the plan made from it
    (and the intact predictions, for the intact accuracy) on every rank."""
    parts = ranks.gather(mine)
    shared = None
    if parts is not None:
        ran = [part for part in parts if part[0] is not None]
        if not ran:
            raise AblationError("no images to ablate")
        where = np.concatenate([np.asarray(part[3], np.int64) for part in ran])
        by_position = np.argsort(where, kind="stable")
        activations = np.concatenate([part[0] for part in ran])[by_position]
        top1 = torch.cat([part[1] for part in ran])[torch.from_numpy(by_position)]
        targets = torch.cat([part[2] for part in ran])[torch.from_numpy(by_position)]
        # the runner of the first batch decides, as in one process (rank 0 has batch 0)
        shared = (_plan(activations, targets.numpy(), seeds, points), ran[0][5],
                  all(part[4] for part in ran), top1, targets)
    return ranks.broadcast(shared)


# -- cache ---------------------------------------------------------------------------------

def cache_file(loaded: LoadedModel, dataset: Dataset, layer: str, seeds: int, points: int,
               cache_dir: str = "") -> Path:
    """Where the result for exactly these images (names, sizes, times), labels and options
    lives: `cache_root/model_key/ablate/LAYER-HASH.json`."""
    digest = files_fingerprint(dataset.paths, dataset.labels, layer, seeds, points,
                               CACHE_FORMAT, ABLATE_FORMAT)
    folder = cache_root(cache_dir) / model_key(loaded) / "ablate"
    return folder / f"{safe_filename(layer)}-{digest}.json"


def load_cached(path: Path) -> CurveResult | None:
    """The stored result at `path`, or None when it is missing, stale or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != ABLATE_FORMAT:
            return None
        return CurveResult.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def layer_curves(
    loaded: LoadedModel, dataset: Dataset, folder: str, layer: str, *, seeds: int, points: int,
    batch_size: int, max_pixels: int, cache_dir: str = "", method: str = "auto",
    use_cache: bool = True, ranks: Ranks | None = None,
) -> Job[Progress, CurveResult]:
    """The curves of `layer` on `dataset` (a job): from the cache when an equal analysis is
    stored there (`cached`: True), else computed and stored atomically. With `ranks`
    (torchrun) each rank runs its batches of images and rank 0 stores the one result."""
    try:  # a concept layer (`L@nmf32`): its concepts are deleted from the source
        directions = direction_layers(loaded, [layer], cache_dir).get(layer)
    except UnknownDirectionLayer as exc:
        raise AblationError(str(exc)) from None
    path = cache_file(loaded, dataset, layer, seeds, points, cache_dir)
    if directions is not None and directions.set.folder is not None:
        # a relearned dictionary is another layer: its curves are not these
        path = path.with_name(f"{path.stem}-{directions.set.folder.name}{path.suffix}")
    if ranks is not None:  # before anything is read from or written to the cache
        ranks.agree({"model weights": model_key(loaded), "dataset listing":
                     f"{len(dataset.paths)} files ({path.stem})", "layer": layer,
                     "seeds": seeds, "points": points, "batch size": batch_size,
                     "max pixels": max_pixels, "method": method, "cache": use_cache})
    hit = load_cached(path) if use_cache else None
    if ranks is not None:  # rank 0's cache decides: on other hosts it is not there
        hit = ranks.broadcast(hit)
    if hit is not None and method in ("auto", hit.method):
        return dataclasses.replace(hit, cached=True, cache_file=str(path))
    part, order = dataset, None
    if ranks is not None:  # whole batches of the single-process run: rank, rank + N, …
        mine = ranks.positions(len(dataset.paths), batch_size)
        part = Dataset(tuple(dataset.paths[i] for i in mine),
                       None if dataset.labels is None else
                       tuple(dataset.labels[i] for i in mine), dataset.folders)
    batches = ImageBatches(loaded, part, batch_size, max_pixels)
    if ranks is not None:
        order = lambda: [mine[i] for i in batches.yielded]  # noqa: E731
    with failing_together(ranks):
        if ranks is None or ranks.is_root:  # where the result will be stored, before the work
            writable_cache(cache_dir)
        result = yield from ablation_curves(
            loaded.module, batches, layer, total=len(part.paths), seeds=seeds,
            points=points, method=method, ranks=ranks, order=order, directions=directions)
    skipped = dict(batches.skipped)
    if ranks is not None:
        for more in ranks.gather(skipped) or []:
            skipped.update(more)
    result = dataclasses.replace(
        result, model=loaded.name, device=str(loaded.device), dataset=folder,
        class_folders=dict(dataset.folders), skipped=tuple(sorted(skipped)),
        cache_file=str(path))
    if ranks is None:
        cache_write_json(path, result.to_json(), items=result.images,
                         what=f"ablation curves of {layer}")
    elif ranks.is_root:
        with failing_together(ranks):
            cache_write_json(path, result.to_json(), items=result.images,
                         what=f"ablation curves of {layer}")
        ranks.check()
    else:
        ranks.check()  # returns once rank 0 has stored the result
    return result
