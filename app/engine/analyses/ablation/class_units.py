"""Which units one class needs (Bau et al., PNAS 2020): each unit deleted alone, ranked.

Pass 1, on the class's own images: the intact network and every unit of the layer deleted
alone; a unit's importance is the drop in the class's accuracy (ties, common on few
images, are broken by the drop in the class's mean softmax probability, then by unit).
Pass 2, on every image: the curves "delete the top n" and "keep only the top n" (every
other unit deleted), each as the accuracy on the class's images and on the other
classes' images. Bau et al. find that deleting ~20 of 512 units destroys a class while
the others barely move, and that keeping only those 20 keeps much of the class.

Each level runs only the layers above the ablated one where the graph can be cut there
(`cut.make_runner`), else the whole network.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.core.atomic import cache_write_json
from app.core.files import files_fingerprint, safe_filename
from app.core.jobs import Job, Progress
from app.engine.analyses.ablation.cut import make_runner
from app.engine.analyses.ablation.datasets import Dataset, ImageBatches
from app.engine.analyses.ablation.deletion import AblationError
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key, writable_cache
from app.engine.runtime.models import LoadedModel

CLASS_UNITS_FORMAT = 1


@dataclass(frozen=True)
class ClassUnitsResult:
    """Units of `layer` ranked by how much class `class_index` needs them, and the curves."""

    layer: str
    units: int
    class_index: int
    class_name: str
    class_images: int
    other_images: int
    intact: dict[str, float]  # "class" / "other" accuracy of the intact network
    drop: list[float]  # per unit: class accuracy lost when it alone is deleted
    prob_drop: list[float]  # per unit: the class's mean probability lost (the tie-breaker)
    ranking: list[int]  # units, most needed first
    counts: list[int]  # n of the curves
    delete_top: dict[str, list[float]]  # "class" / "other" → accuracy with the top n deleted
    keep_top: dict[str, list[float]]  # "class" / "other" → accuracy keeping only the top n
    method: str
    note: str
    seconds: float
    model: str = ""
    dataset: str = ""
    skipped: tuple[str, ...] = ()
    cached: bool = False
    cache_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The document `deepvis ablate --class C --json` prints and the cache stores."""
        return {"format": CLASS_UNITS_FORMAT, "layer": self.layer, "units": self.units,
                "class": {"index": self.class_index, "name": self.class_name},
                "images": {"class": self.class_images, "other": self.other_images},
                "intact_accuracy": self.intact, "drop": self.drop, "prob_drop": self.prob_drop,
                "ranking": self.ranking, "counts": self.counts,
                "curves": {"delete_top": self.delete_top, "keep_top": self.keep_top},
                "method": self.method, "method_note": self.note,
                "seconds": round(self.seconds, 3), "model": self.model,
                "dataset": self.dataset, "skipped": list(self.skipped), "cached": self.cached,
                "cache_file": self.cache_file, **self.extra}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClassUnitsResult:
        c = doc["curves"]
        return cls(doc["layer"], int(doc["units"]), int(doc["class"]["index"]),
                   doc["class"]["name"], int(doc["images"]["class"]),
                   int(doc["images"]["other"]), dict(doc["intact_accuracy"]),
                   list(doc["drop"]), list(doc["prob_drop"]), list(doc["ranking"]),
                   list(doc["counts"]), dict(c["delete_top"]), dict(c["keep_top"]),
                   doc["method"], doc["method_note"], float(doc["seconds"]),
                   doc.get("model", ""), doc.get("dataset", ""), tuple(doc.get("skipped", ())),
                   cache_file=doc.get("cache_file", ""))


def curve_counts(units: int) -> list[int]:
    """0, 1, 2, 4, … and `units`: the n of the top-n curves."""
    out, n = [0], 1
    while n < units:
        out.append(n)
        n *= 2
    return [*out, units]


def _step(stage: str, done: int, total: int) -> Progress:
    return Progress(done, max(total, 1), f"{stage}: {done} / {total} images")


@torch.no_grad()
def class_units(
    loaded: LoadedModel, dataset: Dataset, folder: str, layer: str, class_index: int, *,
    batch_size: int, max_pixels: int, cache_dir: str = "", method: str = "auto",
    use_cache: bool = True,
) -> Job[Progress, ClassUnitsResult]:
    """Rank `layer`'s units by the drop in `class_index`'s accuracy (a job); see the module."""
    t0 = time.perf_counter()
    if dataset.labels is None:
        raise AblationError("--class needs a labelled folder: class sub-folders named by "
                            "class name or index")
    labels = dataset.labels
    mine = [i for i, y in enumerate(labels) if y == class_index]
    if not mine:
        raise AblationError(f"no images of class {class_index} in the dataset's class folders")
    digest = files_fingerprint(dataset.paths, labels, layer, class_index, CACHE_FORMAT,
                               CLASS_UNITS_FORMAT)
    path = (cache_root(cache_dir) / model_key(loaded) / "ablate"
            / f"{safe_filename(layer)}-class{class_index}-{digest}.json")
    if use_cache:
        hit = _load_cached(path)
        if hit is not None and method in ("auto", hit.method):
            return dataclasses.replace(hit, cached=True, cache_file=str(path))
    writable_cache(cache_dir)  # where the result will be stored, before the work
    subset = Dataset(tuple(dataset.paths[i] for i in mine), tuple(labels[i] for i in mine))
    own = ImageBatches(loaded, subset, batch_size, max_pixels)
    everything = ImageBatches(loaded, dataset, batch_size, max_pixels)
    name = loaded.class_names[class_index] if class_index < loaded.num_classes else ""

    # pass 1: the class's images, intact and with each unit deleted alone
    runner: Any = None
    note = ""
    correct: torch.Tensor | None = None
    prob: torch.Tensor | None = None
    intact_hits, intact_prob, seen, units, ndim = 0, 0.0, 0, 0, 4
    yield _step("units one by one", 0, len(mine))
    for x, _ in own():
        if runner is None:
            runner, note = make_runner(loaded.module, layer, method, probe=x)
        state, out_l, logits = runner.intact(x)
        if correct is None:
            units, ndim = out_l.shape[1], out_l.dim()
            correct = torch.zeros(units, dtype=torch.long)
            prob = torch.zeros(units, dtype=torch.float64)
        assert prob is not None  # set with `correct`, for the type checker
        intact_hits += int((logits.argmax(1) == class_index).sum())
        intact_prob += float(torch.softmax(logits.float(), 1)[:, class_index].double().sum())
        for u in range(units):
            out = runner.run(state, _mask(units, [u], ndim, x.device))
            correct[u] += int((out.argmax(1) == class_index).sum())
            prob[u] += float(torch.softmax(out.float(), 1)[:, class_index].double().sum())
        seen += x.shape[0]
        yield _step("units one by one", seen, len(mine))
    if runner is None or correct is None or prob is None or seen == 0:
        raise AblationError(f"no readable image of class {class_index}")
    drop = [(intact_hits - int(c)) / seen for c in correct]
    prob_drop = [(intact_prob - float(p)) / seen for p in prob]
    ranking = sorted(range(units), key=lambda u: (-drop[u], -prob_drop[u], u))

    # pass 2: every image, the top n deleted and only the top n kept
    counts = curve_counts(units)
    levels = ([("delete", n) for n in counts] + [("keep", n) for n in counts])
    masks = [_mask(units, ranking[:n] if kind == "delete" else ranking[n:], ndim,
                   torch.device(loaded.device)) for kind, n in levels]
    hits = torch.zeros(len(levels), 2, dtype=torch.long)  # [class, other]
    totals = [0, 0]
    intact_other = 0
    done = 0
    start = 0
    yield _step("top-n curves", 0, len(labels))
    for x, y in everything():
        assert y is not None
        y = y.to(x.device)
        is_c = y == class_index
        state, _, logits = runner.intact(x)
        intact_other += int(((logits.argmax(1) == y) & ~is_c).sum())
        totals[0] += int(is_c.sum())
        totals[1] += int((~is_c).sum())
        for i, m in enumerate(masks):
            ok = runner.run(state, m).argmax(1) == y
            hits[i, 0] += int((ok & is_c).sum())
            hits[i, 1] += int((ok & ~is_c).sum())
        start += x.shape[0]
        done += x.shape[0]
        yield _step("top-n curves", done, len(labels))
    acc = [[int(h) / max(t, 1) for h, t in zip(row, totals, strict=True)] for row in hits]
    k = len(counts)
    result = ClassUnitsResult(
        layer=layer, units=units, class_index=class_index, class_name=name,
        class_images=totals[0], other_images=totals[1],
        intact={"class": intact_hits / seen, "other": intact_other / max(totals[1], 1)},
        drop=drop, prob_drop=prob_drop, ranking=ranking, counts=counts,
        delete_top={"class": [a[0] for a in acc[:k]], "other": [a[1] for a in acc[:k]]},
        keep_top={"class": [a[0] for a in acc[k:]], "other": [a[1] for a in acc[k:]]},
        method=runner.method, note=note, seconds=time.perf_counter() - t0,
        model=loaded.name, dataset=folder,
        skipped=tuple(sorted(set(own.skipped) | set(everything.skipped))),
        cache_file=str(path))
    cache_write_json(path, result.to_json(), items=result.class_images,
                     what=f"class units of {name} at {layer}")
    return result


def _mask(units: int, deleted: list[int], ndim: int, device: torch.device) -> torch.Tensor:
    m = torch.zeros(units, dtype=torch.bool)
    m[deleted] = True
    return m.view(1, units, *([1] * (ndim - 2))).to(device)


def _load_cached(path: Path) -> ClassUnitsResult | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != CLASS_UNITS_FORMAT:
            return None
        return ClassUnitsResult.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None
