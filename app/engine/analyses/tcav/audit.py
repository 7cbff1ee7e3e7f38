"""`run_audit`: a bias audit of a labelled folder whose images are also sorted into groups.

The layout is `DATASET/<group>/<class>/*.jpg`: a class folder names a class of the model by
name (compared as `app.core.class_names` compares them) or by index, exactly as the ablation
datasets do: both use the core's one matcher (`class_of_folder`), since analyses may not
import each other.

What it answers, in the order it runs:

1. Predictions (one forward per image): per group the accuracy and the rate at which each
   class is predicted; the gaps are max − min over the groups (accuracy, and per class the
   predicted rate), the classes with the largest rate gaps being the ones examined further.
2. TCAV (`run_tcav`) of each group's concept for each of those classes: the group's images
   are the concept's examples, the other groups' images the random sets (several groups:
   one folder per run; one other group: random halves of it), the class's labelled images
   the examples. A significant score says the class's logit leans on what tells this group
   from the others.
3. The group's direction at each layer is the mean of its concept CAVs over the runs
   (renormalized). Its largest components are the units most aligned with it (|cosine|
   between the CAV and a unit's axis is |component|): "the neurons" of the group. Two edits,
   each measured by a new pass over the dataset with the edit applied at that layer:
   - `zero units`: those channels set to 0 at every position;
   - `erase direction`: the CAV's component at every position replaced by its dataset mean,
     x ← x − v (v·x − m) with m the mean of v·x over all images' positions. Linear erasure
     that keeps the mean (a plain projection would also move every group's mean activation
     off the data the network was trained on, which costs accuracy for no insight).
   Each reports the overall accuracy and the gaps after the edit.

Costs: 1 + 2 × groups × layers forward passes over the dataset, plus the TCAV jobs (whose
CAVs are cached, and shared between classes: the concept and random sets do not depend on
the class).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.core.class_names import ClassNameError, class_of_folder
from app.core.files import list_images
from app.core.jobs import Job
from app.engine.analyses.tcav.job import TcavError, TcavResult, run_tcav
from app.engine.analyses.tcav.passes import ImageSettings, TcavProgress, _batches, _logits
from app.engine.runtime.layout import as_map, from_map, input_size, layout_of, split_part
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import prepare_batch
from app.engine.runtime.recorder import LOGITS, default_layer, discover_layers, split_layer_name
from app.engine.runtime.truncate import private_copy


class AuditError(ValueError):
    """A malformed dataset or a question that cannot be asked; one line for the user."""


# -- the dataset ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditData:
    root: str
    groups: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray  # (n,) class index per file
    group_of: np.ndarray  # (n,) group index per file


def match_class(folder: str, class_names: Sequence[str]) -> int | None:
    """The class a folder names (`core.class_names.class_of_folder`); AuditError if several."""
    try:
        return class_of_folder(folder, class_names)
    except ClassNameError as exc:
        raise AuditError(str(exc)) from None


def find_audit_data(root: str | Path, groups: Sequence[str], class_names: Sequence[str]
                    ) -> AuditData:
    base = Path(root).expanduser()
    if not base.is_dir():
        raise AuditError(f"dataset folder not found: {base}")
    if len(set(groups)) < 2:
        raise AuditError("an audit compares groups: name two different groups at least")
    if len(set(groups)) < len(groups):
        raise AuditError("a group is named twice: name each group once")
    files: list[str] = []
    labels: list[int] = []
    group_of: list[int] = []
    for g, group in enumerate(groups):
        folder = base / group
        if not folder.is_dir():
            raise AuditError(f"group folder not found: {folder}")
        classes = sorted(d.name for d in folder.iterdir()
                         if d.is_dir() and not d.name.startswith(".") and list_images(d))
        if not classes:
            raise AuditError(f"no class folders with images in the group {group!r} ({folder}):"
                             " sort its images into DATASET/<group>/<class>/")
        for name in classes:
            index = match_class(name, class_names)
            if index is None:
                raise AuditError(f"class folder {name!r} in group {group!r} matches no class "
                                 "of the model: rename it to a class name or index")
            found = list_images(folder / name)
            files += found
            labels += [index] * len(found)
            group_of += [g] * len(found)
    return AuditData(str(base), tuple(groups), tuple(files), np.array(labels, dtype=np.int64),
                     np.array(group_of, dtype=np.int64))


# -- the numbers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Accuracy and gaps of one pass: as the model is, or with an edit at a layer."""

    edit: str  # "none", "zero units", "erase direction"
    group: str  # whose direction or units were edited ("" for none)
    layer: str
    units: tuple[int, ...]
    accuracy: float  # over all readable images
    group_accuracy: dict[str, float]
    group_rates: dict[str, dict[int, float]]  # group → class → predicted rate
    accuracy_gap: float  # max − min over the groups
    rate_gaps: dict[int, float]  # class → max − min predicted rate over the groups

    def to_json(self, names: Sequence[str]) -> dict[str, Any]:
        return {"edit": self.edit, "group": self.group, "layer": self.layer,
                "units": list(self.units), "accuracy": self.accuracy,
                "group_accuracy": self.group_accuracy, "accuracy_gap": self.accuracy_gap,
                "group_rates": {g: {names[c]: r for c, r in rates.items()}
                                for g, rates in self.group_rates.items()},
                "rate_gaps": {names[c]: v for c, v in self.rate_gaps.items()}}


def outcome(data: AuditData, predicted: np.ndarray, classes: Sequence[int], edit: str = "none",
            group: str = "", layer: str = "", units: Sequence[int] = ()) -> Outcome:
    """The numbers of one pass; `predicted` −1 marks an unreadable file (left out)."""
    ok = predicted >= 0
    acc: dict[str, float] = {}
    rates: dict[str, dict[int, float]] = {}
    for g, name in enumerate(data.groups):
        mine = ok & (data.group_of == g)
        n = max(1, int(mine.sum()))
        acc[name] = float((predicted[mine] == data.labels[mine]).sum()) / n
        rates[name] = {c: float((predicted[mine] == c).sum()) / n for c in classes}
    gaps = {c: max(r[c] for r in rates.values()) - min(r[c] for r in rates.values())
            for c in classes}
    overall = float((predicted[ok] == data.labels[ok]).sum()) / max(1, int(ok.sum()))
    return Outcome(edit, group, layer, tuple(int(u) for u in units), overall, acc, rates,
                   max(acc.values()) - min(acc.values()), gaps)


@dataclass(frozen=True)
class GroupDirection:
    """A group's direction at a layer and its most aligned units (signed components)."""

    group: str
    layer: str
    cav: np.ndarray
    units: tuple[tuple[int, float], ...]
    offset: float  # the dataset's mean of v · x (what `erase direction` keeps)


@dataclass(frozen=True)
class AuditResult:
    model: str
    class_names: tuple[str, ...]
    dataset: str
    groups: tuple[str, ...]
    group_images: dict[str, int]
    baseline: Outcome
    examined: tuple[int, ...]  # the classes with the largest rate gaps, largest first
    tcav: tuple[tuple[str, int, TcavResult], ...]  # (group, class, its TCAV)
    directions: tuple[GroupDirection, ...]
    edits: tuple[Outcome, ...]
    skipped: tuple[tuple[str, str], ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        names = self.class_names
        return {
            "model": self.model, "dataset": self.dataset, "groups": list(self.groups),
            "group_images": self.group_images, "baseline": self.baseline.to_json(names),
            "largest_gaps": [{"class": c, "class_name": names[c],
                              "rate_gap": self.baseline.rate_gaps[c]} for c in self.examined],
            "tcav": [{"group": g, "class": c, "class_name": names[c], **r.to_json()}
                     for g, c, r in self.tcav],
            "directions": [{"group": d.group, "layer": d.layer,
                            "units": [{"unit": u, "component": w} for u, w in d.units]}
                           for d in self.directions],
            "edits": [e.to_json(names) for e in self.edits],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "seconds": round(self.seconds, 3)}


# -- the passes -------------------------------------------------------------------------------

Change = Callable[[torch.Tensor], torch.Tensor]


def _edit_hook(model: nn.Module, layer: str, change: Change, input_hw: tuple[int, int] | None
               ) -> Any:
    """A forward hook that replaces `layer`'s (N, C, H, W) map by `change(map)`."""
    name, call = split_layer_name(layer)
    part = split_part(layer)[1]
    seen = [0]

    def hook(m: nn.Module, _inputs: Any, out: Any) -> Any:
        layout = layout_of(out, m, input_hw)
        if layout is None:
            return None
        k = seen[0]
        seen[0] += 1
        if k != call or (part and not layout.prefix):
            return None
        return from_map(out, layout, change(as_map(out, layout, part)), part)

    return model.get_submodule(name).register_forward_hook(hook)


def predictions(model: nn.Module, loaded: LoadedModel, files: Sequence[str],
                edits: dict[str, Change], s: ImageSettings, stage: str,
                skipped: list[tuple[str, str]]) -> Job[TcavProgress, np.ndarray]:
    """Predicted class per file (−1: unreadable) with `edits` applied at their layers."""
    out = np.full(len(files), -1, dtype=np.int64)
    with ThreadPoolExecutor(2) as pool, torch.no_grad():
        for upto, ids, images in _batches(files, s, loaded.device, pool, skipped):
            if images:
                x = prepare_batch(images, loaded.preprocess)
                handles = [_edit_hook(model, layer, f, input_size(x))
                           for layer, f in edits.items()]
                try:
                    out[ids] = _logits(model(x)).argmax(1).cpu().numpy()
                finally:
                    for h in handles:
                        h.remove()
            yield TcavProgress(done=upto, total=len(files), stage=stage)
    return out


def _zero(units: Sequence[int]) -> Change:
    def change(m: torch.Tensor) -> torch.Tensor:
        m = m.clone()
        m[:, list(units)] = 0
        return m
    return change


def _erase(cav: np.ndarray, offset: float) -> Change:
    def change(m: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(cav, device=m.device, dtype=m.dtype).view(1, -1, 1, 1)
        return m - v * ((m * v).sum(1, keepdim=True) - offset)
    return change


def _recorder(sums: dict[str, list[torch.Tensor]], layer: str) -> Change:
    def change(m: torch.Tensor) -> torch.Tensor:
        sums[layer].append(m.float().mean((2, 3)))
        return m
    return change


# -- the job ----------------------------------------------------------------------------------


def run_audit(
    loaded: LoadedModel, dataset: str | Path, groups: Sequence[str],
    layers: Sequence[str] = (), *, classes: int = 2, units: int = 3, runs: int = 10,
    method: str = "logistic", seed: int = 0, batch_size: int = 16, cache_dir: str = "",
    cav_dir: str | Path | None = None, max_pixels: int = 80_000_000, max_side: int = 1280,
) -> Job[TcavProgress, AuditResult]:
    """The audit of `dataset`'s `groups` (module doc) at `layers` (default: the model's
    default layer); `classes` with the largest gaps are examined, `units` per direction."""
    started = time.perf_counter()
    if classes < 1 or units < 1:
        raise AuditError("--classes and --units must be 1 at least")
    data = find_audit_data(dataset, groups, loaded.class_names)
    infos, _clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    shapes = {i.name: i.shape for i in infos if i.name != LOGITS}
    layers = list(dict.fromkeys(layers)) or [default_layer(infos)]
    for layer in layers:
        if layer not in shapes:
            raise AuditError(f"no layer named {layer!r} with a (C, H, W) output in "
                             f"{loaded.name} (see `deepvis layers`)")
    s = ImageSettings(batch_size, max_pixels, max_side)
    model = private_copy(loaded.module, loaded.device)
    skipped: list[tuple[str, str]] = []

    # 1. as the model is, recording each layer's spatial means for the erasure's offsets
    sums: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    predicted = yield from predictions(
        model, loaded, data.files, {layer: _recorder(sums, layer) for layer in layers}, s,
        "predictions", skipped)
    if not (predicted >= 0).any():
        raise AuditError("none of the dataset's images could be read")
    seen = sorted(set(data.labels.tolist()) | set(predicted[predicted >= 0].tolist()))
    baseline = outcome(data, predicted, seen)
    examined = tuple(sorted(seen, key=lambda c: (-baseline.rate_gaps[c], c))[:classes])
    means = {layer: torch.cat(v).mean(0).cpu().numpy() for layer, v in sums.items()}

    # 2. TCAV of each group's concept for each examined class
    tests: list[tuple[str, int, TcavResult]] = []
    folders = [str(Path(data.root) / g) for g in data.groups]
    ok = predicted >= 0
    for g, group in enumerate(data.groups):
        others = [f for k, f in enumerate(folders) if k != g]
        for c in examined:
            examples = [f for f, lab in zip(data.files, data.labels, strict=True) if lab == c]
            if not examples:  # a class only predicted: its predicted images stand in
                examples = [f for f, p in zip(data.files, predicted, strict=True) if p == c]
            try:
                result = yield from run_tcav(
                    loaded, folders[g], others, examples, c, layers, runs=runs,
                    method=method, seed=seed, batch_size=batch_size, cache_dir=cache_dir,
                    out=cav_dir, max_pixels=max_pixels, max_side=max_side)
            except TcavError as exc:
                raise AuditError(f"TCAV of group {group!r}: {exc}") from None
            tests.append((group, c, result))

    # 3. each group's direction per layer, its units, and the two edits
    directions: list[GroupDirection] = []
    edits: list[Outcome] = []
    for group in data.groups:
        result = next(r for g, _c, r in tests if g == group)
        for score in result.layers:
            v = score.cavs.mean(0)
            v = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
            top = np.argsort(-np.abs(v), kind="stable")[:units]
            d = GroupDirection(group, score.layer, v,
                               tuple((int(u), float(v[u])) for u in top),
                               float(means[score.layer] @ v))
            directions.append(d)
            for name, change, picked in (("zero units", _zero(top.tolist()), top.tolist()),
                                         ("erase direction", _erase(v, d.offset), [])):
                after = yield from predictions(model, loaded, data.files,
                                               {score.layer: change}, s, name, [])
                after[~ok] = -1
                edits.append(outcome(data, after, seen, name, group, score.layer, picked))
    return AuditResult(
        model=loaded.name, class_names=tuple(loaded.class_names), dataset=data.root,
        groups=data.groups,
        group_images={g: int((ok & (data.group_of == k)).sum())
                      for k, g in enumerate(data.groups)},
        baseline=baseline, examined=examined, tcav=tuple(tests), directions=tuple(directions),
        edits=tuple(edits), skipped=tuple(sorted(set(skipped))),
        seconds=time.perf_counter() - started)
