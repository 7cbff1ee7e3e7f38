"""Ablation curves: accuracy as more and more units of one layer are deleted.

For every image the layers below the ablated layer L are computed once: the network is cut
at L with torch.fx into a *prefix* (input → every value alive at the cut: L's output, and any
skip connection that crosses it) and a *suffix* (those values → logits). Each deletion level
then only runs the suffix on the cached values with L's chosen channels zeroed. A model fx
cannot trace, or whose split does not reproduce the intact logits, falls back to the naive
loop (the whole network per level, with `Ablation` hooks), and the result says so.

Two passes over the data: the first records the intact predictions and each unit's spatial
mean activation (for the class selectivity that orders the deletions); the second runs all
levels of all orders, each distinct set of deleted units once per batch. Values alive at the
cut are kept in memory between the passes when they fit `cache_bytes`; otherwise the second
pass decodes the images and runs the prefix again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from app.core.atomic import atomic_write_json
from app.core.files import files_fingerprint, list_images, safe_filename
from app.core.jobs import Job, Progress
from app.core.selectivity import class_selectivity, deletion_counts, deletion_orders
from app.engine.analyses.ablation.deletion import Ablation, AblationError
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import split_layer_name

ABLATE_FORMAT = 1  # bump when the cached document's layout changes

# -- cutting the network at a layer --------------------------------------------------------

class CutError(RuntimeError):
    """The network cannot be split at that layer; the naive loop is used instead."""


class _CutTracer(fx.Tracer):
    """Traces only through the modules that contain the target; every other one is a leaf.

    Leaves are called as they are, so their code never has to be traceable (e.g. padding
    computed from the input's shape): the graph is as coarse as the cut allows.

    While it traces, torch.fx swaps `nn.Module.__call__` and `__getattr__` for *every*
    thread. The live worker runs the live model at that very moment, and its module calls
    reached this tracer, which refused modules outside the traced copy ("NameError: module is
    not installed as a submodule": a failed frame each time ablation curves started). Calls
    from any other thread are passed straight through.
    """

    def __init__(self, ancestors: set[str]) -> None:
        super().__init__()
        self.ancestors = ancestors
        self._thread = threading.get_ident()

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self._thread = threading.get_ident()
        return super().trace(root, concrete_args)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)  # another thread's model, running for real
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.ancestors


@dataclass
class CutModel:
    """`prefix(x)` → tuple of values alive at the cut; `suffix(*values)` → the output."""

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    layer_index: int  # where L's output sits in the tuple
    live: tuple[str, ...]  # names of the values crossing the cut (for messages)


def cut_at(model: nn.Module, layer: str) -> CutModel:
    """Split `model` right after the module `layer` (`name:k`: its k-th call). CutError if not."""
    name, call = split_layer_name(layer)
    try:
        model.get_submodule(name)
    except AttributeError:
        raise AblationError(f"no layer named {name!r} in the model") from None
    parts = name.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    try:
        graph = _CutTracer(ancestors).trace(model)
    except Exception as exc:
        raise CutError(f"torch.fx cannot trace the model: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
    if len(calls) <= call:
        raise CutError(f"{layer} is not a module call in the traced graph")
    target = calls[call]
    nodes = list(graph.nodes)
    pos = nodes.index(target)
    before, after = nodes[: pos + 1], nodes[pos + 1 :]
    inside = set(before)
    crossing = [n for n in before if any(u not in inside for u in n.users)]
    live = [n for n in crossing if n.op != "get_attr"]  # parameters are not per image

    pre = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in before:
        env[n] = pre.node_copy(n, lambda a: env[a])
    pre.output(tuple(env[n] for n in live))

    post = fx.Graph()
    env2: dict[fx.Node, fx.Node] = {n: post.placeholder(f"cut_{n.name}") for n in live}
    for n in crossing:
        if n.op == "get_attr":
            env2[n] = post.node_copy(n, lambda a: env2[a])
    for n in after:
        env2[n] = post.node_copy(n, lambda a: env2[a])
    prefix, suffix = fx.GraphModule(model, pre), fx.GraphModule(model, post)
    return CutModel(prefix, suffix, live.index(target), tuple(n.name for n in live))


# -- running levels: the cut and the naive way ---------------------------------------------

class _Redo(Exception):  # control flow
    """The suffix wrote into a cached value in place: recompute it, clone it from now on."""


class _CutRunner:
    method = "cut"

    def __init__(self, cut: CutModel) -> None:
        self.cut = cut
        self.clone: set[int] = set()

    def prepare(self, x: torch.Tensor) -> tuple[Any, ...]:
        return self.cut.prefix(x)

    def intact(self, x: torch.Tensor) -> tuple[tuple[Any, ...], torch.Tensor, torch.Tensor]:
        """(state, L's output, intact output) for a batch."""
        state = self.prepare(x)
        none = torch.zeros(1, dtype=torch.bool, device=x.device)
        try:
            out = self.run(state, none)
        except _Redo:  # learned which cached values the suffix overwrites; they are cloned now
            state = self.prepare(x)
            out = self.run(state, none)
        return state, state[self.cut.layer_index], out

    def run(self, state: tuple[Any, ...], mask: torch.Tensor) -> torch.Tensor:
        li = self.cut.layer_index
        args = list(state)
        out_l = args[li]
        # a new tensor even with nothing deleted: the cached output must stay intact
        args[li] = torch.where(mask, out_l.new_zeros(()), out_l)
        watch = []
        for i, a in enumerate(state):
            if i == li or not isinstance(a, torch.Tensor):
                continue
            if i in self.clone:
                args[i] = a.clone()
            else:
                watch.append((i, a._version))
        out = self.cut.suffix(*args)
        changed = {i for i, v in watch if state[i]._version != v}
        if changed:
            self.clone |= changed
            raise _Redo
        return out

    def nbytes(self, state: tuple[Any, ...]) -> int:
        return sum(a.numel() * a.element_size() for a in state if isinstance(a, torch.Tensor))


class _NaiveRunner:
    """The whole network for every level, with the same ablation as the live view."""

    method = "naive"

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self.layer = layer
        self.ablation = Ablation(model, {layer: ()})
        name, call = split_layer_name(layer)
        self._module = model.get_submodule(name)
        self._call = call

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def intact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []

        def keep(_m: nn.Module, _i: Any, out: Any) -> None:
            seen.append(out.clone() if len(seen) == self._call else out)

        h = self._module.register_forward_hook(keep)
        try:
            out = self.model(x)
        finally:
            h.remove()
        return x, seen[self._call], out

    def run(self, state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        units = torch.nonzero(mask.flatten()).flatten().tolist()
        self.ablation.set(self.layer, units)
        with self.ablation:
            return self.model(state)

    def nbytes(self, state: torch.Tensor) -> int:
        return state.numel() * state.element_size()


def make_runner(model: nn.Module, layer: str, method: str = "auto",
                probe: torch.Tensor | None = None) -> tuple[Any, str]:
    """A level runner for `layer` and a note: `method` is "auto", "cut" or "naive".

    "auto" tries the cut and checks on `probe` (a batch) that prefix → suffix gives the
    intact output; anything else falls back to the naive loop, and the note says why.
    """
    if method == "naive":
        return _NaiveRunner(model, layer), "naive loop (asked for)"
    try:
        cut = cut_at(model, layer)
        runner = _CutRunner(cut)
        if probe is not None:
            with torch.no_grad():
                want = model(probe)
                _, _, got = runner.intact(probe)
            if not isinstance(got, torch.Tensor) or got.shape != want.shape \
                    or not torch.allclose(got, want, rtol=1e-5, atol=1e-5):
                raise CutError("the split network does not reproduce the intact output")
        live = ", ".join(cut.live)
        return runner, f"cut at {layer}; values kept per image: {live}"
    except CutError as exc:
        if method == "cut":
            raise
        return _NaiveRunner(model, layer), f"naive loop: {exc}"


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
) -> Job[Progress, CurveResult]:
    """Accuracy vs. fraction of `layer`'s units deleted, in random and selectivity orders.

    `batches()` yields (x (N, 3, H, W) normalized, labels (N,) or None) and may be called
    twice; `total` is the number of images it yields (for progress). A job: it yields a
    `Progress` per batch and returns the `CurveResult`. Without labels the
    accuracy is agreement with the intact network's top-1, and the selectivity classes are
    the intact top-1 classes.
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
            runner, note = make_runner(model, layer, method, probe=x)
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
    if runner is None:
        raise AblationError("no images to ablate")
    activations = np.concatenate(acts)
    intact_top1 = torch.cat(intact)
    targets = torch.cat(labels) if labels else intact_top1
    units = activations.shape[1]

    sel_labels = targets.cpu().numpy()
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
    device = targets.device
    masks = torch.zeros(len(keys), units, dtype=torch.bool)
    for key, i in keys.items():
        masks[i, list(key)] = True
    ndim = out_l.dim()
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
    acc = (correct.double() / start).cpu().tolist()
    curves = {name: [acc[i] for i in idx] for name, idx in plan.items()}
    return CurveResult(
        layer=layer, units=units, images=start, labeled=labels is not None,
        method=runner.method, note=note,
        fractions=[k / units for k in counts], deleted=counts,
        intact_accuracy=float((intact_top1 == targets).double().mean()),
        curves=curves, selectivity=index.tolist(),
        preferred_class=[int(c) for c in preferred],
        selectivity_shifted=shifted, classes=n_classes, seeds=seeds,
        levels=len(keys), seconds=time.perf_counter() - t0, extra=extra,
    )


# -- datasets: image folders, labeled by class folders -------------------------------------

@dataclass(frozen=True)
class Dataset:
    paths: tuple[Path, ...]
    labels: tuple[int, ...] | None  # model class indices, None: unlabeled
    folders: dict[str, int] = field(default_factory=dict)  # class folder → class index


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def match_class(folder: str, class_names: Sequence[str]) -> int | None:
    """Class index named by a folder: a plain index (`281`) or a class name, compared without
    case, spaces, underscores or hyphens (`tiger_cat` = `Tiger Cat`). AblationError if the
    name fits several classes; None if it fits none."""
    if folder.isdigit():
        i = int(folder)
        return i if i < len(class_names) else None
    key = _norm(folder)
    hits = [i for i, c in enumerate(class_names) if _norm(c) == key]
    if len(hits) > 1:
        raise AblationError(f"class folder {folder!r} fits several classes {hits}: "
                            "name it by index instead")
    return hits[0] if hits else None


def find_dataset(root: str | Path, class_names: Sequence[str]) -> Dataset:
    """Images under `root`; labeled when every sub-folder holding images names a class."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise AblationError(f"dataset folder not found: {base}")
    base = Path(os.path.abspath(base))
    paths = [Path(p) for p in list_images(base)]
    if not paths:
        raise AblationError(f"no images in {base}")
    rel = [p.relative_to(base).parts for p in paths]
    tops = sorted({parts[0] for parts in rel if len(parts) > 1})
    matched = {t: match_class(t, class_names) for t in tops}
    hits = {t: i for t, i in matched.items() if i is not None}
    if not hits:
        return Dataset(tuple(paths), None)
    missing = [t for t, i in matched.items() if i is None]
    if missing:
        raise AblationError(f"class folder {missing[0]!r} matches no class of the model "
                            f"({len(hits)} others do): rename it to a class name or index")
    labeled = [p for p in paths if len(p.relative_to(base).parts) > 1]
    labels = tuple(hits[p.relative_to(base).parts[0]] for p in labeled)
    return Dataset(tuple(labeled), labels, hits)


class ImageBatches:
    """Batches of preprocessed images (decoded by two threads) with their labels; call it
    for a fresh pass.

    Unreadable files are skipped, never fatal; their paths collect in `skipped` (each file
    once, however often the batches are replayed).
    """

    def __init__(self, loaded: LoadedModel, dataset: Dataset, batch_size: int,
                 max_pixels: int = 80_000_000) -> None:
        self.loaded, self.dataset = loaded, dataset
        self.batch_size, self.max_pixels = batch_size, max_pixels
        self.skipped: dict[str, str] = {}

    def _load(self, path: Path) -> torch.Tensor | None:
        from app.capture.images import ImageError, read_image

        try:
            return frame_to_tensor(read_image(path, self.max_pixels), self.loaded.device)
        except ImageError as exc:
            self.skipped[str(path)] = str(exc)
            return None

    def __call__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        paths, labels, step = self.dataset.paths, self.dataset.labels, self.batch_size
        with ThreadPoolExecutor(2) as pool:
            for start in range(0, len(paths), step):
                images = list(pool.map(self._load, paths[start : start + step]))
                keep = [i for i, img in enumerate(images) if img is not None]
                if not keep:
                    continue
                x = prepare_batch([img for img in images if img is not None],
                                  self.loaded.preprocess)
                y = None
                if labels is not None:
                    chunk = labels[start : start + step]
                    y = torch.tensor([chunk[i] for i in keep])
                yield x, y


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
    use_cache: bool = True,
) -> Job[Progress, CurveResult]:
    """The curves of `layer` on `dataset` (a job): from the cache when an equal analysis is
    stored there (`cached`: True), else computed and stored atomically."""
    path = cache_file(loaded, dataset, layer, seeds, points, cache_dir)
    hit = load_cached(path) if use_cache else None
    if hit is not None and method in ("auto", hit.method):
        return dataclasses.replace(hit, cached=True, cache_file=str(path))
    batches = ImageBatches(loaded, dataset, batch_size, max_pixels)
    result = yield from ablation_curves(
        loaded.module, batches, layer, total=len(dataset.paths), seeds=seeds,
        points=points, method=method)
    result = dataclasses.replace(
        result, model=loaded.name, device=str(loaded.device), dataset=folder,
        class_folders=dict(dataset.folders), skipped=tuple(sorted(batches.skipped)),
        cache_file=str(path))
    atomic_write_json(path, result.to_json())
    return result
