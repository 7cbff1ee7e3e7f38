"""Background analyses for the live window: scans, renders, ablation curves.

Each job runs on a thread of its own with a cancel Event, on a private hook-free copy of
the model (the live worker keeps running the original), and reports through events:
JobProgress while it runs, JobFinished at the end, and its results (UnitPatches,
PreferredImage, AblationCurves). A new job of a kind replaces the one still running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from app.core.messages import (
    AblationCurves,
    JobFinished,
    JobKind,
    JobProgress,
    Patch,
    PreferredGrid,
    PreferredImage,
    UnitPatches,
)
from app.core.settings import Settings
from app.core.tiling import grid_geometry
from app.core.topk import load_scan
from app.engine.cache import cache_root, model_key
from app.engine.featurevis.render import RenderProgress, cached_unit, render_units
from app.engine.models import LoadedModel
from app.engine.truncate import private_copy

Emit = Callable[[object], None]
JOB_NICENESS = 10


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
        Patch(np.ascontiguousarray(crops[i]), float(e.value), str(e.path), tuple(e.box))
        for i, e in enumerate(entries)
    )
    best = float(entries[0].value) if entries else None
    return UnitPatches(layer, unit, patches), best


class Jobs:
    """At most one running job per kind; `stop()` cancels and joins them all."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._running: dict[JobKind, tuple[threading.Thread, threading.Event]] = {}
        self._superseded: weakref.WeakSet[threading.Event] = weakref.WeakSet()
        # every thread started, cancelled ones too: they may still be winding down
        self._threads: list[threading.Thread] = []

    def start(self, kind: JobKind, work: Callable[[threading.Event], str]) -> None:
        """Run `work(cancel)` on a new thread; it returns the one-line outcome."""
        self.cancel(kind, quiet=True)
        cancel = threading.Event()

        def run() -> None:
            _lower_priority()
            try:
                text = work(cancel)
                if cancel in self._superseded:  # replaced by a newer job: not news
                    return
                ok = not cancel.is_set()
                self._emit(JobFinished(kind, ok, text if ok else f"{kind.value} cancelled"))
            except Exception as exc:  # a job's failure is the user's news, not a crash
                if cancel in self._superseded:
                    return
                if cancel.is_set():
                    self._emit(JobFinished(kind, False, f"{kind.value} cancelled"))
                else:
                    msg = f"{kind.value} failed: {type(exc).__name__}: {exc}"
                    self._emit(JobFinished(kind, False, msg.splitlines()[0]))

        thread = threading.Thread(target=run, name=f"deepvis-job-{kind.value}", daemon=True)
        with self._lock:
            self._running[kind] = (thread, cancel)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

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


def _lower_priority() -> None:
    """Let the live view win the CPU: nice this job thread (and the OpenMP threads torch
    starts from it, which inherit it) where the OS allows per-thread priorities."""
    # not Linux, or not permitted: the job runs at normal priority
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)


def _renders(settings: Settings, loaded: LoadedModel, layer: str, units: Sequence[int],
             cancel: threading.Event) -> Iterator[RenderProgress]:
    """Preferred images of `units` with the settings' preset, cached.

    No `private_model` here: the renderer makes its own private copy (and then folds and
    re-lays it out for speed, which only a copy may do); a second copy would only cost time.
    """
    r = settings.render
    return render_units(loaded, layer, units, preset=r.preset,
                        steps=r.steps or None, size=r.size or None, seed=r.seed,
                        cancel=cancel, cache_root=cache_root(settings.cache.dir),
                        batch_size=r.batch_size)


def render_unit_job(settings: Settings, loaded: LoadedModel, layer: str, unit: int,
                    emit: Emit) -> Callable[[threading.Event], str]:
    """Patches at once, then the preferred image: from the cache, or rendered with previews."""

    def work(cancel: threading.Event) -> str:
        patches, best = unit_patches(settings, loaded, layer, unit)
        emit(patches)
        for p in _renders(settings, loaded, layer, [unit], cancel):
            if cancel.is_set():
                break
            emit(PreferredImage(layer, unit, p.images[0], float(p.activations[0]), p.step,
                                p.total, p.final, best))
        return f"preferred image of {layer} unit {unit} ready"

    return work


def render_layer_job(settings: Settings, loaded: LoadedModel, layer: str, channels: int,
                     emit: Emit) -> Callable[[threading.Event], str]:
    def work(cancel: threading.Event) -> str:
        done = 0
        emit(JobProgress(JobKind.RENDER_LAYER, 0, channels, f"rendering {layer}…"))
        for p in _renders(settings, loaded, layer, range(channels), cancel):
            if p.final:
                done += len(p.units)
                emit(JobProgress(JobKind.RENDER_LAYER, done, channels,
                                 f"{done} / {channels} units of {layer}"))
        return f"preferred images of all {channels} units of {layer} cached"

    return work


PREFERRED_TILE = 64  # px per unit in the grid of preferred images (1,280 units: 2.3k px)
UNRENDERED = 40  # grey level of a unit with no preferred image yet


def preferred_grid_job(settings: Settings, loaded: LoadedModel, layer: str, channels: int,
                       aspect: float, emit: Emit) -> Callable[[threading.Event], str]:
    """The layer's cached preferred images as one mosaic (`PreferredGrid`); renders nothing."""

    def work(cancel: threading.Event) -> str:
        r = settings.render
        root = cache_root(settings.cache.dir)
        g = grid_geometry(channels, PREFERRED_TILE, PREFERRED_TILE, pad=2, aspect=aspect)
        mosaic = np.zeros((g.height, g.width, 3), np.uint8)
        rendered = []
        for unit in range(channels):
            if cancel.is_set():
                return "cancelled"
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

    return work


def scan_job(settings: Settings, loaded: LoadedModel, folder: str, layer: str,
             emit: Emit) -> Callable[[threading.Event], str]:
    from app.engine.scan import run_scan

    def work(cancel: threading.Event) -> str:
        s = settings.scan

        def progress(p) -> None:  # type: ignore[no-untyped-def]
            emit(JobProgress(JobKind.SCAN, p.done, max(p.total, 1), p.line()))

        # forkserver: forking a process that runs Qt and torch threads is not safe
        report = run_scan(private_model(loaded), folder, [layer], top_k=s.top_k,
                          batch_size=s.batch_size, workers=s.workers,
                          cache_dir=settings.cache.dir, crop_size=s.crop_size,
                          progress=progress, cancel=cancel, mp_context="forkserver")
        skipped = len(report.skipped)
        extra = f", {skipped} unreadable files skipped" if skipped else ""
        return f"scan of {layer} done: {report.scanned} images{extra}"

    return work


def ablation_job(settings: Settings, loaded: LoadedModel, folder: str, layer: str,
                 emit: Emit) -> Callable[[threading.Event], str]:
    from app.engine.ablation_curves import curves_document, find_dataset

    def work(cancel: threading.Event) -> str:
        a = settings.ablate
        model = private_model(loaded)

        def progress(stage: str, done: int, total: int) -> None:
            emit(JobProgress(JobKind.ABLATE, done, max(total, 1), f"{stage}: {done} / {total}"))

        doc = curves_document(
            model, find_dataset(folder, model.class_names), folder, layer, seeds=a.seeds,
            points=a.points, batch_size=a.batch_size,
            max_pixels=settings.source.max_image_pixels, cache_dir=settings.cache.dir,
            progress=progress, should_stop=cancel.is_set,
        )
        emit(curves_from_json(doc))
        skipped = len(doc.get("skipped", []))
        extra = f", {skipped} unreadable files skipped" if skipped else ""
        return f"ablation curves of {layer} on {doc['images']} images ready{extra}"

    return work


def curves_from_json(doc: dict) -> AblationCurves:
    c = doc["curves"]
    curves = {
        "random": (np.asarray(c["random"]["mean"]), np.asarray(c["random"]["std"])),
        "selective first": (np.asarray(c["selectivity_high_to_low"]),
                            np.zeros(len(c["selectivity_high_to_low"]))),
        "selective last": (np.asarray(c["selectivity_low_to_high"]),
                           np.zeros(len(c["selectivity_low_to_high"]))),
    }
    return AblationCurves(doc["layer"], np.asarray(doc["fractions"]), curves,
                          np.asarray(doc["selectivity"]["index"]), doc["accuracy_means"],
                          int(doc["images"]))


def folder_exists(folder: str) -> bool:
    return Path(folder).expanduser().is_dir()
