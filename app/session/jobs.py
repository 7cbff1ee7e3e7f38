"""Background analyses for the live window: scans, renders, ablation curves.

Each job is the analysis' own job (`app.core.jobs`: a generator yielding progress) wrapped
in a generator that posts its results as events (UnitPatches, PreferredImage,
AblationCurves) and returns the one-line outcome. `Jobs` runs each on a thread of its own,
on a private hook-free copy of the model (the live worker keeps running the original), and
posts JobProgress while it runs and JobFinished at the end. A new job of a kind replaces
the one still running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import cv2
import numpy as np

from app.core.backend import Event
from app.core.jobs import Cancelled, Job, Progress, run_job
from app.core.messages import (
    AblationCurves,
    ClassUnitCurves,
    ConceptUnit,
    FrameImage,
    IntegratedExplanation,
    JobFinished,
    JobKind,
    JobProgress,
    LayerConcepts,
    Patch,
    PatchAttributions,
    PreferredGrid,
    PreferredImage,
    PreferredVariant,
    UnitFacts,
    UnitIcons,
    UnitPatches,
)
from app.core.scan_results import load_scan
from app.core.settings import Settings
from app.core.tiling import grid_geometry
from app.engine.analyses.ablation import (
    ClassUnitsResult,
    CurveResult,
    class_units,
    find_dataset,
    layer_curves,
)
from app.engine.analyses.blocks import ClassScore, LayerAttributor
from app.engine.analyses.blocks import integrated_job as blocks_integrated_job
from app.engine.analyses.dissection import (
    DissectionResult,
    LayerDissection,
    cached_layer,
    concept_text,
    dissect,
)
from app.engine.analyses.featurevis import (
    FrameProgress,
    RenderProgress,
    RenderResult,
    accentuate,
    cached_unit,
    invert,
    render_units,
)
from app.engine.analyses.patches import scan
from app.engine.runtime.cache import cache_root, model_key
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.truncate import private_copy
from app.session.catalog.cached import cached_curves, unit_ablation
from app.session.patch_attributions import PATCH_RULE, patch_attributions

Emit = Callable[[Event], None]
JOB_NICENESS = 10
PROGRESS_S = 0.1  # a job's progress reaches the GUI at most this often
P = TypeVar("P", bound=Progress)
R = TypeVar("R")


def private_model(loaded: LoadedModel) -> LoadedModel:
    """The same model for a job: a copy without the live recorder's or ablation's hooks."""
    return dataclasses.replace(loaded, module=private_copy(loaded.module, loaded.device))


def unit_patches(settings: Settings, loaded: LoadedModel, layer: str,
                 unit: int) -> tuple[UnitPatches, float | None]:
    """The dataset top-k of a unit from a cached scan, and its best value (None: no scan)."""
    scan = load_scan(cache_root(settings.cache.dir), model_key(loaded), layer)
    if scan is None:
        note = (f"No scan of {layer} yet. Analysis → Scan folder for top patches…, or "
                f"`deepvis scan FOLDER --layers {layer}`.")
        return UnitPatches(layer, unit, (), note), None
    entries = scan.top(unit)
    crops = scan.unit_crops(unit)
    patches = tuple(
        Patch(np.ascontiguousarray(crops[i]), float(e.value), str(e.path), e.box)
        for i, e in enumerate(entries)
    )
    best = float(entries[0].value) if entries else None
    return UnitPatches(layer, unit, patches), best


class Jobs:
    """At most one running job per kind; `stop()` cancels and joins them all.

    A job is a generator (`app.core.jobs`) that yields `Progress` and returns its one-line
    outcome; each runs on a thread of its own, driven by `run_job`, its progress posted as
    `JobProgress` (only when it changed, at most every `PROGRESS_S` unless it finished) and
    its end as `JobFinished`.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._running: dict[JobKind, tuple[threading.Thread, threading.Event]] = {}
        self._superseded: weakref.WeakSet[threading.Event] = weakref.WeakSet()
        # every thread started, cancelled ones too: they may still be winding down
        self._threads: list[threading.Thread] = []

    def start(self, kind: JobKind, job: Job[Progress, str]) -> None:
        """Run `job` on a new thread, replacing the running job of `kind`."""
        self.cancel(kind, quiet=True)
        cancel = threading.Event()
        thread = threading.Thread(target=self._run, args=(kind, job, cancel),
                                  name=f"deepvis-job-{kind.value}", daemon=True)
        with self._lock:
            self._running[kind] = (thread, cancel)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _run(self, kind: JobKind, job: Job[Progress, str], cancel: threading.Event) -> None:
        _lower_priority()
        try:
            text = run_job(job, _ProgressPoster(kind, self._emit), cancel)
            outcome = JobFinished(kind, True, text)
        except Cancelled:
            outcome = JobFinished(kind, False, f"{kind.value} cancelled")
        except Exception as exc:  # a job's failure is the user's news, not a crash
            msg = f"{kind.value} failed: {type(exc).__name__}: {exc}".splitlines()[0]
            outcome = JobFinished(kind, False, f"{kind.value} cancelled" if cancel.is_set()
                                  else msg)
        if cancel not in self._superseded:  # a job replaced by a newer one is not news
            self._emit(outcome)

    def cancel(self, kind: JobKind, quiet: bool = False) -> None:
        """Stop the running job of `kind`; `quiet`: it was replaced, so it reports nothing."""
        with self._lock:
            entry = self._running.pop(kind, None)
        if entry is not None:
            if quiet:
                self._superseded.add(entry[1])
            entry[1].set()  # the thread notices within one step and ends by itself

    def stop(self) -> None:
        """Cancel every job and wait for all their threads, cancelled ones included."""
        with self._lock:
            entries = list(self._running.values())
            self._running.clear()
            threads = list(self._threads)
        for _thread, cancel in entries:
            cancel.set()
        for thread in threads:
            thread.join()


class _ProgressPoster:
    """Posts a job's steps as `JobProgress`: only changes, and at most every `PROGRESS_S`
    unless the step finishes a stage (a render yields a step every few milliseconds)."""

    def __init__(self, kind: JobKind, emit: Emit) -> None:
        self.kind, self.emit = kind, emit
        self.last: tuple[int, int, str] | None = None
        self.last_s = 0.0

    def __call__(self, p: Progress) -> None:
        key, now = (p.done, p.total, p.line()), time.monotonic()
        if key != self.last and (p.finished or now - self.last_s >= PROGRESS_S):
            self.last, self.last_s = key, now
            self.emit(JobProgress(self.kind, p.done, max(p.total, 1), p.line()))


def _lower_priority() -> None:
    """Let the live view win the CPU: nice this job thread (and the OpenMP threads torch
    starts from it, which inherit it) where the OS allows per-thread priorities."""
    # not Linux, or not permitted: the job runs at normal priority
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)


def _renders(settings: Settings, loaded: LoadedModel, layer: str,
             units: Sequence[int]) -> Job[RenderProgress, RenderResult]:
    """Preferred images of `units` with the settings' preset, cached.

    No `private_model` here: the renderer makes its own private copy (and then folds and
    re-lays it out for speed, which only a copy may do); a second copy would only cost time.
    """
    r = settings.render
    return render_units(loaded, layer, units, preset=r.preset,
                        steps=r.steps or None, size=r.size or None, seed=r.seed,
                        cache_root=cache_root(settings.cache.dir), batch_size=r.batch_size)


def render_unit_job(settings: Settings, loaded: LoadedModel, layer: str, unit: int,
                    emit: Emit) -> Job[Progress, str]:
    """Patches at once, then the preferred image: from the cache, or rendered with previews."""
    patches, best = unit_patches(settings, loaded, layer, unit)
    emit(patches)
    rendering = Progress(0, 1, f"rendering {layer} unit {unit}")  # the tab shows the steps
    for p in _renders(settings, loaded, layer, [unit]):
        if p.images is not None and p.activations is not None:
            emit(PreferredImage(layer, unit, p.images[0], float(p.activations[0]), p.step,
                                p.total, p.final, best))
        yield rendering
    return f"preferred image of {layer} unit {unit} ready"


def render_layer_job(settings: Settings, loaded: LoadedModel, layer: str,
                     channels: int) -> Job[Progress, str]:
    """Every unit of `layer`, progress counted in finished units."""
    done = 0
    yield Progress(0, channels, f"rendering {layer}…")
    for p in _renders(settings, loaded, layer, range(channels)):
        done += len(p.units) if p.final else 0
        yield Progress(done, channels, f"{done} / {channels} units of {layer}")
    return f"preferred images of all {channels} units of {layer} cached"


PREFERRED_TILE = 64  # px per unit in the grid of preferred images (1,280 units: 2.3k px)
UNRENDERED = 40  # grey level of a unit with no preferred image yet


def preferred_grid_job(settings: Settings, loaded: LoadedModel, layer: str, channels: int,
                       aspect: float, emit: Emit) -> Job[Progress, str]:
    """The layer's cached preferred images as one mosaic (`PreferredGrid`); renders nothing."""
    r = settings.render
    root = cache_root(settings.cache.dir)
    g = grid_geometry(channels, PREFERRED_TILE, PREFERRED_TILE, pad=2, aspect=aspect)
    mosaic = np.zeros((g.height, g.width, 3), np.uint8)
    rendered = []
    for unit in range(channels):
        yield Progress(unit, channels, f"preferred images of {layer}")
        y, x = g.tile_origin(unit)
        tile = mosaic[y : y + PREFERRED_TILE, x : x + PREFERRED_TILE]
        hit = cached_unit(loaded, root, layer, unit, r.preset, r.steps or None,
                          r.size or None, r.seed)
        if hit is None:
            tile[:] = UNRENDERED
            continue
        tile[:] = cv2.resize(hit[0], (PREFERRED_TILE, PREFERRED_TILE),
                             interpolation=cv2.INTER_AREA)
        rendered.append(unit)
    emit(PreferredGrid(layer, mosaic, g, tuple(rendered)))
    return f"{len(rendered)} of {channels} preferred images of {layer}"


def scan_job(settings: Settings, loaded: LoadedModel, folder: str,
             layer: str) -> Job[Progress, str]:
    """The top patches of every unit of `layer` in `folder`, into the cache."""
    s = settings.scan
    # forkserver: forking a process that runs Qt and torch threads is not safe
    report = yield from scan(private_model(loaded), folder, [layer], top_k=s.top_k,
                             batch_size=s.batch_size, workers=s.workers,
                             cache_dir=settings.cache.dir, crop_size=s.crop_size,
                             mp_context="forkserver")
    skipped = len(report.skipped)
    extra = f", {skipped} unreadable files skipped" if skipped else ""
    return f"scan of {layer} done: {report.scanned} images{extra}"


def ablation_job(settings: Settings, loaded: LoadedModel, folder: str, layer: str,
                 emit: Emit) -> Job[Progress, str]:
    """Ablation curves and class selectivity of `layer` on `folder` (`AblationCurves`)."""
    a = settings.ablate
    model = private_model(loaded)
    result = yield from layer_curves(
        model, find_dataset(folder, model.class_names), folder, layer, seeds=a.seeds,
        points=a.points, batch_size=a.batch_size,
        max_pixels=settings.source.max_image_pixels, cache_dir=settings.cache.dir)
    emit(curves_message(result))
    skipped = len(result.skipped)
    extra = f", {skipped} unreadable files skipped" if skipped else ""
    return f"ablation curves of {layer} on {result.images} images ready{extra}"


def curves_message(result: CurveResult) -> AblationCurves:
    """The message the Ablation tab plots, from the analysis' result."""
    rnd = result.random_curves()
    high, low = (np.asarray(result.curves[k]) for k in
                 ("selectivity_high_to_low", "selectivity_low_to_high"))
    curves = {
        "random": (rnd.mean(0), rnd.std(0)),
        "selective first": (high, np.zeros(len(high))),
        "selective last": (low, np.zeros(len(low))),
    }
    return AblationCurves(result.layer, np.asarray(result.fractions), curves,
                          np.asarray(result.selectivity), result.accuracy_means, result.images,
                          shifted_units=result.selectivity_shifted)


MONTAGE = 4  # preferred images on the unit card, rendered together with a diversity term


def unit_facts(settings: Settings, loaded: LoadedModel, layer: str, unit: int,
               channels: int) -> UnitFacts:
    """The unit's class selectivity and concept label, as far as the caches know them."""
    curves = cached_curves(loaded, layer, channels, settings.cache.dir)
    selectivity = None
    hint = (f"No ablation curves of {layer} cached: Analysis → Ablation curves on a "
            "folder… gives every unit's class selectivity")
    if curves is not None and 0 <= unit < curves.units:
        a = unit_ablation(curves, unit)
        names = loaded.class_names
        cls = names[a.preferred_class] if 0 <= a.preferred_class < len(names) else "?"
        selectivity = f"{a.index:.2f} (rank {a.rank + 1} of {curves.units}), prefers {cls}"
        hint = f"on {curves.images} images of {curves.dataset or '?'}"
    found = cached_layer(cache_root(settings.cache.dir) / model_key(loaded), layer)
    concept, threshold = None, None
    concept_hint = (f"No dissection of {layer} cached: Analysis → Dissect… or `deepvis "
                    f"dissect FOLDER --layers {layer}` names what units detect")
    if found is not None and 0 <= unit < len(found[1].units):
        named = found[1].units[unit]
        if named.interpretable:  # its mask is the concept's only where it has one
            concept, threshold = concept_text(named), named.threshold
        else:
            concept_hint = (f"detects no concept of {found[0].dataset} (best: "
                            f"{concept_text(named)}, below the minimum)")
    return UnitFacts(layer, unit, selectivity, hint, concept, concept_hint, threshold)


def unit_card_job(settings: Settings, loaded: LoadedModel, layer: str, unit: int,
                  channels: int, emit: Emit) -> Job[Progress, str]:
    """What the unit card adds to the selection's patches and preferred image: the facts,
    the attribution of each top patch (cached with the scan), and MONTAGE preferred images
    optimized together with a diversity term (cached as one set), previews as they come.

    Independent seeds of one unit tend to converge on the same picture; pushed apart, the
    images show what the unit does not care about (Yosinski et al.'s invariances)."""
    emit(unit_facts(settings, loaded, layer, unit, channels))
    steps = 2
    yield Progress(0, steps, f"unit card of {layer} unit {unit}")
    scan_result = load_scan(cache_root(settings.cache.dir), model_key(loaded), layer)
    if scan_result is not None and scan_result.top(unit):
        images = patch_attributions(loaded, scan_result, unit,
                                    max_pixels=settings.source.max_image_pixels)
        emit(PatchAttributions(layer, unit, tuple(images), str(PATCH_RULE)))
    yield Progress(1, steps, f"unit card of {layer} unit {unit}: preferred images")
    r = settings.render
    for p in render_units(loaded, layer, [unit], preset=r.preset, steps=r.steps or None,
                          size=r.size or None, seed=r.seed,
                          cache_root=cache_root(settings.cache.dir), batch_size=MONTAGE,
                          diversity=MONTAGE):
        if p.images is not None and p.activations is not None:
            for index, (image, activation) in enumerate(zip(p.images, p.activations,
                                                            strict=True)):
                emit(PreferredVariant(layer, unit, index, r.seed, image, float(activation),
                                      p.final))
        yield Progress(1 + p.done, 1 + p.total,
                       f"unit card of {layer} unit {unit}: preferred images, step {p.done}")
    return f"unit card of {layer} unit {unit} complete"


def layer_concepts(settings: Settings, loaded: LoadedModel, layer: str) -> LayerConcepts:
    """The newest cached dissection of `layer` for the window (none: a how-to note)."""
    found = cached_layer(cache_root(settings.cache.dir) / model_key(loaded), layer)
    if found is None:
        return LayerConcepts(layer, "", (), note=(
            f"No dissection of {layer} yet. Analysis → Dissect a folder… names what its "
            "units detect: any photo folder gives colour concepts, a Broden-format folder "
            f"NetDissect's (or `deepvis dissect FOLDER --layers {layer}`)."))
    return concepts_message(*found)


def layer_concepts_job(settings: Settings, loaded: LoadedModel, layer: str,
                       emit: Emit) -> Job[Progress, str]:
    """`layer_concepts` as a (one-step) job, so the files are read off the GUI thread."""
    yield Progress(0, 1, f"concept labels of {layer}")
    message = layer_concepts(settings, loaded, layer)
    emit(message)
    return f"{len(message.labels())} concept labels of {layer}"


def concepts_message(result: DissectionResult, layer: LayerDissection) -> LayerConcepts:
    """The message the window shows, from the analysis' result."""
    summary = layer.summary
    by = tuple((c, v.interpretable, v.unique) for c, v in summary.by_category.items())
    units = tuple(ConceptUnit(u.unit, u.label, u.category, u.iou, u.interpretable)
                  for u in layer.units)
    where = f"{result.dataset} ({result.kind}, {result.images} images, min IoU {result.min_iou})"
    return LayerConcepts(layer.layer, where, units, summary.interpretable, summary.unique, by)


def dissect_job(settings: Settings, loaded: LoadedModel, folder: str, layer: str,
                emit: Emit) -> Job[Progress, str]:
    """Concept labels of every unit of `layer` on `folder`, into the cache (`LayerConcepts`)."""
    d = settings.dissect
    # forkserver: forking a process that runs Qt and torch threads is not safe
    result = yield from dissect(
        private_model(loaded), folder, [layer], quantile=d.quantile, min_iou=d.min_iou,
        batch_size=d.batch_size, workers=settings.scan.workers, cache_dir=settings.cache.dir,
        top_k=d.top_k, max_pixels=settings.source.max_image_pixels, mp_context="forkserver")
    message = concepts_message(result, result.layers[layer])
    emit(message)
    return (f"dissection of {layer} done: {message.interpretable} of {len(message.units)} "
            f"units detect a concept, {message.unique} distinct")


ICON_STEPS, ICON_SIZE = 48, 64  # a missing icon: a short, small render (its own cache key)


def unit_icons_job(settings: Settings, loaded: LoadedModel, layer: str,
                   units: Sequence[int], emit: Emit) -> Job[Progress, str]:
    """Icons of `units`: the unit's cached preferred image where there is one (the
    settings' preset), else a short small render, sent as each batch is done."""
    r, root = settings.render, cache_root(settings.cache.dir)
    hits, missing = [], []
    for unit in dict.fromkeys(int(u) for u in units):
        hit = cached_unit(loaded, root, layer, unit, r.preset, r.steps or None,
                          r.size or None, r.seed)
        hit = hit or cached_unit(loaded, root, layer, unit, r.preset, ICON_STEPS, ICON_SIZE,
                                 r.seed)
        if hit is None:
            missing.append(unit)
        else:
            hits.append((unit, hit[0]))
    if hits:
        emit(UnitIcons(layer, tuple(hits)))
    total = max(len(missing), 1)
    yield Progress(0, total, f"icons of {layer}")
    done = 0
    for p in render_units(loaded, layer, missing, preset=r.preset, steps=ICON_STEPS,
                          size=ICON_SIZE, seed=r.seed, cache_root=root, batch_size=8):
        if p.final and p.images is not None:
            emit(UnitIcons(layer, tuple(zip(p.units, p.images, strict=True))))
            done += len(p.units)
        yield Progress(done, total, f"icons of {layer}")
    return f"{len(hits) + done} icons of {layer}"


def class_units_job(settings: Settings, loaded: LoadedModel, folder: str, layer: str,
                    class_index: int, emit: Emit) -> Job[Progress, str]:
    """The units of `layer` that class `class_index` needs, on `folder` (`ClassUnitCurves`)."""
    model = private_model(loaded)
    result = yield from class_units(
        model, find_dataset(folder, model.class_names), folder, layer, class_index,
        batch_size=settings.ablate.batch_size, max_pixels=settings.source.max_image_pixels,
        cache_dir=settings.cache.dir)
    emit(class_units_message(result))
    top = ", ".join(str(u) for u in result.ranking[:5])
    return f"units of {layer} that {result.class_name!r} needs most: {top}"


def class_units_message(r: ClassUnitsResult) -> ClassUnitCurves:
    return ClassUnitCurves(
        r.layer, r.class_index, r.class_name, tuple(r.ranking), tuple(r.counts),
        tuple(r.delete_top["class"]), tuple(r.delete_top["other"]),
        tuple(r.keep_top["class"]), tuple(r.keep_top["other"]), r.class_images,
        f"{r.class_images} images of the class, {r.other_images} of others; {r.note}")


def integrated_job(settings: Settings, loaded: LoadedModel, image: np.ndarray, layer: str,
                   target: int, versus: int | None, emit: Emit) -> Job[Progress, str]:
    """Path-integrated attribution of a frozen frame ([blocks].integrated_steps steps)."""
    steps = settings.blocks.integrated_steps
    x = prepare_batch([frame_to_tensor(image, loaded.device)], loaded.preprocess)
    attributor = LayerAttributor(loaded)  # a private copy: the live model is not touched
    result = yield from blocks_integrated_job(attributor, x, layer,
                                              ClassScore(target, versus), steps=steps)
    message = IntegratedExplanation(layer, target, versus, steps, result.channels,
                                    result.spatial, result.score, result.baseline)
    emit(message)
    return (f"path-integrated attribution of {layer} ({steps} steps): adds up to score − "
            f"baseline within {100 * message.gap:.1f} %")


def relay(job: Job[P, R], on_step: Callable[[P], None]) -> Job[P, R]:
    """`job`'s steps, each shown to `on_step` first (previews); its result. A cancel closes
    this generator at its yield, and `job` with it, so its own finally blocks run."""
    try:
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                return cast(R, stop.value)
            on_step(step)
            yield step
    finally:
        job.close()


def accentuate_job(settings: Settings, loaded: LoadedModel, image: np.ndarray, layer: str,
                   unit: int, emit: Emit) -> Job[Progress, str]:
    """Feature accentuation of `unit` in a frozen frame, with previews (`FrameImage`)."""

    def preview(p: FrameProgress) -> None:
        if p.image is not None:
            value = "" if p.value is None else f"activation {p.value:.2f} · "
            emit(FrameImage("accentuate", layer, unit, p.image,
                            f"{value}step {p.done}/{p.total}", False))

    r = yield from relay(accentuate(loaded, image, layer, unit, seed=settings.render.seed),
                         preview)
    caption = (f"activation {r.activation_before:.2f} → {r.activation_after:.2f}, "
               f"{r.psnr:.1f} dB from the frame")
    emit(FrameImage("accentuate", layer, unit, r.image, caption, True, r.seed))
    return f"{layer} unit {unit} accentuated: {caption}"


def invert_job(settings: Settings, loaded: LoadedModel, image: np.ndarray,
               layers: Sequence[str], emit: Emit) -> Job[Progress, str]:
    """The frame reconstructed from each layer's code, with previews (`FrameImage`)."""

    def preview(p: FrameProgress) -> None:
        if p.image is not None:
            err = "" if p.value is None else f"code error {p.value:.2f} · "
            emit(FrameImage("invert", p.layer, -1, p.image, f"{err}step {p.done}/{p.total}",
                            False))

    r = yield from relay(invert(loaded, image, list(layers), seed=settings.render.seed),
                         preview)
    for inv in r.layers:
        emit(FrameImage("invert", inv.layer, -1, inv.image,
                        f"code error {inv.code_error:.2f} (from {inv.start_error:.2f})", True,
                        r.seed))
    return "inverted " + ", ".join(f"{i.layer} ({i.code_error:.2f})" for i in r.layers)
