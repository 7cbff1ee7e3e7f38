"""The live backend: capture thread → inference worker, driven by the GUI.

It composes app.capture and app.engine and implements app.core.backend.LiveBackend;
it never imports Qt. Slow steps (opening a camera, loading a model) run on one loader
thread so every call from the GUI returns at once.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from app.capture.sources import SourceError, open_source
from app.capture.thread import CaptureThread
from app.core.backend import Event
from app.core.messages import (
    Frame,
    LayersChanged,
    ModelChoice,
    ModelFailed,
    ModelReady,
    Notice,
    NoticeLevel,
    SourceFailed,
    SourceReady,
)
from app.core.requests import FolderRequest, JobEvent, Request
from app.core.results import Result
from app.core.settings import Settings
from app.core.slot import LatestSlot
from app.core.view import ViewState
from app.engine.live import FrameProcessor, InferenceWorker
from app.engine.runtime.cache import cache_root
from app.engine.runtime.directions import DirectionSet
from app.engine.runtime.models import (
    BUNDLED,
    LoadedModel,
    ModelError,
    load_model,
    model_choices,
    torchvision_names,
)
from app.session import jobs
from app.session.jobs.runner import SessionJob
from app.session.seen_frames import SeenFrames

# inside the package, so a wheel install has it too (pyproject package-data)
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def sample_video() -> Path:
    """The bundled sample video, shown when there is no camera."""
    found = sorted(ASSETS.glob("sample.*"))
    if not found:
        raise FileNotFoundError(f"no bundled sample video in {ASSETS}")
    return found[0]


class LiveSession:
    """Owns the capture thread, the inference worker and the loader thread."""

    def __init__(self, settings: Settings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.frames: LatestSlot[Frame] = LatestSlot()
        self.results: LatestSlot[Result] = LatestSlot()
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.worker = InferenceWorker(
            self.frames, self.results, on_error=self._error, top_k=settings.view.top_k
        )
        self.frames.listener = self._on_frame
        self.seen = SeenFrames(cache_root(settings.cache.dir) / "session-frames")
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepvis-loader")
        self._capture: CaptureThread | None = None
        self._capture_lock = threading.Lock()
        self._mirror = settings.source.mirror
        self._frozen = False
        self._stopped = False
        self._loaded: LoadedModel | None = None
        self._processor: FrameProcessor | None = None
        self._channels: dict[str, int] = {}
        self._jobs = jobs.Jobs(self._post_job)
        self.worker.start()

    # -- LiveBackend ------------------------------------------------------------------
    def poll_result(self) -> Result | None:
        return self.results.take()

    def poll_events(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def set_view(self, view: ViewState) -> None:
        self.worker.set_view(view)
        with self._capture_lock:
            if view.frozen != self._frozen:
                # frozen, the worker takes no frames: reading on would count them as dropped
                self._frozen = view.frozen
                if self._capture is not None:
                    self._capture.set_paused(view.frozen)

    def open_source(self, spec: str) -> None:
        self._submit(self._open_source, spec)

    def step_source(self, delta: int) -> None:
        with self._capture_lock:
            if self._capture is not None:
                self._capture.step(delta)

    def set_mirror(self, mirror: bool) -> None:
        self._mirror = mirror
        with self._capture_lock:
            if self._capture is not None:
                self._capture.set_mirror(mirror)

    def load_model(self, spec: str) -> None:
        self._submit(self._load_model, spec)

    def model_choices(self) -> list[ModelChoice]:
        return model_choices()

    def architectures(self) -> list[str]:
        return torchvision_names()

    # -- background jobs: one registered job per request type (app/session/jobs) -------
    def submit(self, request: Request) -> None:
        loaded = self._loaded
        if loaded is None:
            if isinstance(request, FolderRequest):  # the user picked a folder: say why not
                self._error("no model loaded yet")
            return
        context = jobs.JobContext(self.settings, loaded, dict(self._channels),
                                  self.seen.snapshot)

        def make() -> SessionJob | None:
            job = jobs.make_job(context, request)
            if job is not None and not request.quiet and request.progress_bar:
                # a folder job's first step comes after its first batch (workers start,
                # the model is copied: many seconds on a small machine): its bar and its
                # Cancel from the click on, busy until the total is known
                self._events.put(JobEvent(request, 0, 0, f"{request.label}: starting…"))
            return job

        try:
            self._jobs.start(request, make)
        except jobs.Refused as exc:
            self._error(str(exc))

    def cancel(self, kind: str) -> None:
        self._jobs.cancel(kind)

    def _post_job(self, event: JobEvent) -> None:
        """A job's event for the window. A job whose result or preview is a direction set (a
        concept dictionary, a concept's CAVs, an atlas's cells) makes it a layer of the live
        view first, and the event says so with the new layer list (a result's is shown, a
        preview's only listed): whichever analysis wrote the set, this is the one place it
        joins the view."""
        result, preview = _direction_sets(event.result), _direction_sets(event.preview)
        if result is not None:  # the answer: shown (`added`)
            event = dataclasses.replace(event, result=self._add_directions(result))
        if preview is not None:  # news on the way: listed, the shown layer stays
            changed = self._add_directions(preview)
            event = dataclasses.replace(event, preview=None if changed is None else
                                        dataclasses.replace(changed, added=""))
        self._events.put(event)

    def _add_directions(self, sets: tuple[DirectionSet, ...]) -> LayersChanged | None:
        processor = self._processor
        if processor is None:
            return None
        layers, added = None, ""
        for directions in sets:
            now = processor.add_directions(directions)
            if now is not None:
                layers, added = now, directions.name
        if layers is None:
            return None
        self._channels = {info.name: info.shape[0] for info in layers}
        return LayersChanged(layers, added)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._loader.shutdown(wait=True, cancel_futures=True)
        self._jobs.stop()
        with self._capture_lock:
            capture, self._capture = self._capture, None
        if capture is not None:
            capture.stop()
            capture.join()
        self.worker.stop()
        self.worker.join()
        self.frames.close()
        self.seen.remove()

    def _on_frame(self) -> None:
        """A frame from the capture (its thread): the worker wakes, the session keeps one a
        second for an atlas of the session (`SeenFrames`)."""
        self.worker.poke()
        frame = self.frames.peek()
        if frame is not None:
            self.seen.offer(frame)

    # -- loader thread ----------------------------------------------------------------
    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._stopped:
            self._loader.submit(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # the loader must survive anything a user points it at
            self._error(f"{type(exc).__name__}: {exc}".splitlines()[0])

    def _load_model(self, spec: str) -> None:
        self._notice(f"loading model {spec}…")
        try:
            loaded = load_model(spec, self.device, self.settings.model)
        except Exception as exc:  # any file a user points at: say why, keep the old model
            reason = str(exc) if isinstance(exc, ModelError) else (
                f"{type(exc).__name__}: {exc}".splitlines()[0])
            if self._loaded is None and spec not in (BUNDLED, "bundled", "default"):
                # at start there is no old model to keep: without one no frame would ever
                # show, so show the one that always loads (offline) and say why
                self._notice(f"cannot load {spec}: {reason} — showing the bundled "
                             f"{BUNDLED} instead", NoticeLevel.WARNING)
                self._load_model(BUNDLED)
                return
            self._error(reason)
            self._events.put(ModelFailed(spec, reason))
            return
        b = self.settings.blocks
        processor = FrameProcessor(loaded, self.settings.view.top_k,
                                   dictionary_top=b.dictionary_top, groups=b.groups,
                                   cache_dir=self.settings.cache.dir)
        self._jobs.cancel_all()  # results for the old model would be wrong now
        self._loaded, self._processor = loaded, processor
        self._channels = {info.name: info.shape[0] for info in processor.layers}
        self.worker.set_model(processor)
        self._events.put(ModelReady(
            loaded.name, processor.layers, processor.default_layer, str(loaded.device),
            loaded.num_classes, tuple(loaded.class_names),
        ))

    def _open_source(self, spec: str) -> None:
        src = self.settings.source
        if spec == "auto":
            try:
                source = open_source("camera:0", src)
            except SourceError:
                try:
                    source = open_source(str(sample_video()), src)
                except (SourceError, FileNotFoundError) as exc:
                    self._source_failed(spec, str(exc))
                    return
                self._notice("no camera found: showing the bundled sample video",
                             NoticeLevel.WARNING)
        else:
            try:
                source = open_source(spec, src)
            except SourceError as exc:
                with self._capture_lock:
                    running = self._capture is not None and self._capture.is_alive()
                self._source_failed(spec, str(exc), still_showing=running)
                return
        label = source.label
        capture = CaptureThread(source, self.frames, src, on_notice=self._capture_notice,
                                on_failed=lambda reason: self._source_failed(label, reason))
        capture.set_mirror(self._mirror)
        with self._capture_lock:
            capture.set_paused(self._frozen)
            stopped = self._stopped
            if stopped:  # stop() ran meanwhile: this capture must never start
                old: CaptureThread | None = capture
            else:
                old, self._capture = self._capture, capture
        if old is not None:
            old.stop()
            old.join()
        if stopped:
            return
        capture.start()
        self._events.put(SourceReady(source.label, source.kind, source.count, source.position))

    # -- events -----------------------------------------------------------------------
    def _notice(self, text: str, level: NoticeLevel = NoticeLevel.INFO) -> None:
        self._events.put(Notice(text, level))

    def _error(self, text: str) -> None:
        self._events.put(Notice(text, NoticeLevel.ERROR))

    def _source_failed(self, spec: str, reason: str, still_showing: bool = False) -> None:
        """The error line, then the event that lets the panes say it (a failed open
        leaves a source that was showing running: the panes keep its frames)."""
        self._error(reason)
        self._events.put(SourceFailed(spec, reason, still_showing))

    def _capture_notice(self, text: str, level: str) -> None:
        self._events.put(Notice(text, NoticeLevel(level)))


def _direction_sets(value: object) -> tuple[DirectionSet, ...] | None:
    """`value` as direction sets when it is one or a tuple of them, else None."""
    if isinstance(value, DirectionSet):
        return (value,)
    if isinstance(value, tuple) and value and all(isinstance(v, DirectionSet) for v in value):
        return value
    return None
