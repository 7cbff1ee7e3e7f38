"""The inference worker: newest frame in → hooked forward → one small Result out."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from app.core.messages import Frame, LayerInfo, Normalization, Prediction
from app.core.results import Result, find_record
from app.core.slot import LatestSlot
from app.core.tiling import GridGeometry, grid_geometry
from app.core.view import ViewState
from app.engine.live.directions import DirectionLayers
from app.engine.live.stages import STAGES, FramePass, Stage, StageContext
from app.engine.runtime.directions import DirectionSet
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.predict import top_predictions
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import ActivationRecorder, default_layer, discover_layers
from app.engine.runtime.tiling import normalize_on_device, tile_on_device

log = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R")


@dataclass(frozen=True)
class Snapshot:
    """What one frame produced, before it is wrapped with timing into a Result: the basics
    and the stages' records."""

    crop: tuple[int, int, int, int]
    layer: str
    geometry: GridGeometry
    mosaic: np.ndarray
    unit: int
    unit_map: np.ndarray
    unit_max: np.ndarray
    unit_mean: np.ndarray
    predictions: tuple[Prediction, ...]
    records: tuple[Any, ...] = ()

    def record(self, kind: type[R]) -> R | None:
        """This frame's record of `kind`, None while its stage was off."""
        return find_record(self.records, kind)


class FrameProcessor:
    """Runs one model on frames with every layer hooked; owns the recorder's hooks and the
    live stages (`app/engine/live/stages`).

    Synchronous, so the live worker, the benchmark and tests share exactly one code path.
    Per frame: the recorded pass (run by the first stage that owns it, else plainly, inside
    every stage's context), the grid of the shown layer, the predictions, then each stage's
    record.
    """

    def __init__(self, loaded: LoadedModel, top_k: int = 5, top_k_frames: int = 9,
                 dictionary_top: int = 4, groups: int = 6, cache_dir: str | None = None) -> None:
        self.loaded = loaded
        self.top_k = top_k
        layers, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
        self.default_layer = default_layer(layers)
        self._lock = threading.Lock()  # add_directions (a job's thread) against process
        self.directions = DirectionLayers(loaded, layers)
        if cache_dir is not None:  # None: no direction layers from the cache (benchmarks)
            self.directions.load_cached(cache_dir)
        self._base = tuple(layers)
        self.layers = self.directions.listed(layers)
        self.by_name = {info.name: info for info in self.layers}  # the stages share it
        self.recorder = ActivationRecorder(loaded.module).__enter__()
        self.recorder.clone_layers |= clone
        self._geometries: dict[tuple[str, float], GridGeometry] = {}
        ctx = StageContext(loaded, self.recorder, self.by_name, self._top, top_k_frames,
                           dictionary_top, groups, self.directions)
        self.stages: tuple[Stage, ...] = tuple(make(ctx) for make in STAGES)

    def stage(self, kind: type[S]) -> S:
        """The registered stage of `kind` (its switches, for benchmarks and tests)."""
        for s in self.stages:
            if isinstance(s, kind):
                return s
        raise KeyError(f"no live stage {kind.__name__}")

    def errors(self) -> tuple[str, ...]:
        """Why stages stopped on this model, to tell the user once each."""
        return tuple(s.error for s in self.stages if s.error)

    def close(self) -> None:
        for s in self.stages:
            s.close()
        self.recorder.remove()

    def add_directions(self, directions: DirectionSet) -> tuple[LayerInfo, ...] | None:
        """Show a new (or relearned) direction set as a layer after its source; the new
        layer list, or None when it does not fit this model. Safe from any thread."""
        with self._lock:
            info = self.directions.add(directions)
            if info is None:
                return None
            self.by_name[info.name] = info
            self._geometries = {k: g for k, g in self._geometries.items() if k[0] != info.name}
            self.layers = self.directions.listed(self._base)
            return self.layers

    def geometry(self, layer: str, aspect: float = 1.0) -> GridGeometry:
        key = (layer, round(min(max(aspect, 0.2), 5.0), 1))
        g = self._geometries.get(key)
        if g is None:
            c, h, w = self.by_name[layer].shape
            g = grid_geometry(c, h, w, pad=1, aspect=key[1])
            self._geometries[key] = g
        return g

    def resolve(self, view: ViewState) -> tuple[str, int]:
        layer = view.layer if view.layer in self.by_name else self.default_layer
        channels = self.by_name[layer].shape[0]
        return layer, min(max(view.unit, 0), channels - 1)

    def _top(self, logits: torch.Tensor) -> tuple[Prediction, ...]:
        return top_predictions(logits[0], self.top_k, self.loaded.class_names)

    def _pass(self, frame: FramePass) -> torch.Tensor:
        """The recorded pass inside every stage's context; the first stage that owns the
        forward runs it."""
        with contextlib.ExitStack() as stack:
            for s in self.stages:
                stack.enter_context(s.around(frame))
            for s in self.stages:
                logits = s.forward(frame)
                if logits is not None:
                    return logits
            out: torch.Tensor = self.recorder.run(frame.x)
            return out

    def process(self, image: np.ndarray, view: ViewState,
                frame_id: int | None = None) -> Snapshot:
        """One frame through the hooked net. `frame_id` None: a re-render of a seen frame."""
        with self._lock:
            return self._process(image, view, frame_id)

    @torch.no_grad()
    def _process(self, image: np.ndarray, view: ViewState, frame_id: int | None) -> Snapshot:
        lm = self.loaded
        for stage in self.stages:
            image = stage.prepare(image, view)
        x = prepare_batch([frame_to_tensor(image, lm.device)], lm.preprocess)
        layer, unit = self.resolve(view)
        crop = lm.preprocess.crop_box(*image.shape[:2])
        frame = FramePass(x, image, crop, view, layer, unit, frame_id)
        # keep what this frame shows and what the stages read, not every layer
        self.recorder.keep = {self.directions.source_of(layer), *(
            name for stage in self.stages for name in stage.needs(view))}
        logits = self._pass(frame)
        # layers above a forked deletion hold [intact; ablated]: show what the net receives
        if layer in self.directions.layers:  # codes of the source map, on the device
            acts = self.directions.codes(layer, self.recorder)
        else:
            acts = self.recorder.activations[layer][-1]
        frame.logits, frame.acts = logits, acts
        g = self.geometry(layer, view.grid_aspect)
        per_channel = view.normalization == Normalization.PER_CHANNEL
        mosaic = tile_on_device(normalize_on_device(acts, per_channel), g)
        flat = acts.flatten(1).float()
        # one round of small copies: the mosaic (uint8), one map and a few vectors
        mosaic_np = mosaic.cpu().numpy()
        unit_map = acts[unit].float().cpu().numpy()
        stats = torch.stack([flat.amax(1), flat.mean(1)]).cpu().numpy()
        records = tuple(r for r in (s.record(frame) for s in self.stages) if r is not None)
        return Snapshot(crop, layer, g, mosaic_np, unit, unit_map, stats[0], stats[1],
                        self._top(logits), records)


class RateMeter:
    """Events per second over a sliding window of recent events."""

    def __init__(self, window_s: float = 1.5) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> float:
        self._times.append(now)
        return self.rate(now)

    def rate(self, now: float) -> float:
        """The current rate; 0 once no event came within the window (a still image)."""
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(now - self._times[0], 1e-9)


class InferenceWorker(threading.Thread):
    """Takes the newest frame, processes it, publishes the newest Result. Never queues.

    A view change or a new model re-renders the last frame, so a frozen or still image
    follows the user's clicks without new frames arriving.
    """

    def __init__(
        self,
        frames: LatestSlot[Frame],
        results: LatestSlot[Result],
        on_error: Callable[[str], None],
        top_k: int = 5,
    ) -> None:
        super().__init__(name="inference-worker", daemon=True)
        self.frames = frames
        self.results = results
        self.on_error = on_error
        self.top_k = top_k
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._view = ViewState()
        self._pending_model: FrameProcessor | None = None
        self._processor: FrameProcessor | None = None
        self._dirty = False
        self._seq = 0
        self._rate = RateMeter()
        self._reported: str | None = None  # the last processor problem told to the user
        self._frame_ids = 0  # grows with every new frame (live top-k needs growing ids)
        self.processed = 0

    # -- called from other threads -------------------------------------------------
    def set_view(self, view: ViewState) -> None:
        with self._lock:
            self._view = view
            self._dirty = True
        self._wake.set()

    def set_model(self, processor: FrameProcessor) -> None:
        """Switch to a processor built (hooks and all) on another thread."""
        with self._lock:
            self._pending_model = processor
            self._dirty = True
        self._wake.set()

    def poke(self) -> None:
        """Called by whoever fills the frame slot, so the worker wakes at once."""
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    # -- the worker thread ----------------------------------------------------------
    def run(self) -> None:
        last: Frame | None = None
        last_seen: Frame | None = None  # the frame processed last, to tell re-renders apart
        try:
            while not self._halt.is_set():
                self._wake.wait(0.05)
                self._wake.clear()
                with self._lock:
                    view, dirty, pending = self._view, self._dirty, self._pending_model
                    self._dirty, self._pending_model = False, None
                if pending is not None:
                    if self._processor is not None:
                        self._processor.close()
                    self._processor = pending
                frame = None if view.frozen and last is not None else self.frames.take()
                origin = frame.timestamp if frame is not None else time.perf_counter()
                if frame is None:
                    if not dirty or last is None:
                        continue
                    frame = last  # a re-render: latency counts from the request, not capture
                last = frame
                if self._processor is not None:
                    self._process(frame, view, origin, fresh=frame is not last_seen)
                    last_seen = frame
        finally:
            if self._processor is not None:
                self._processor.close()

    def _process(self, frame: Frame, view: ViewState, origin: float, fresh: bool) -> None:
        proc = self._processor
        assert proc is not None
        t0 = time.perf_counter()
        try:
            self._frame_ids += fresh
            snap = proc.process(frame.image, view, self._frame_ids if fresh else None)
        except Exception as exc:  # a bad frame or model must not kill the live view
            self.on_error(f"inference failed: {type(exc).__name__}: {exc}".splitlines()[0])
            return
        now = time.perf_counter()
        self._seq += 1
        self.processed += 1
        # only new frames count towards the rate: re-renders of a still image are not frames
        fps = self._rate.tick(now) if fresh else self._rate.rate(now)
        lm = proc.loaded
        self.results.put(Result(
            seq=self._seq, frame=frame, crop=snap.crop, layer=snap.layer,
            geometry=snap.geometry, mosaic=snap.mosaic, unit=snap.unit,
            unit_map=snap.unit_map, unit_max=snap.unit_max, unit_mean=snap.unit_mean,
            predictions=snap.predictions, latency_ms=(now - origin) * 1e3,
            compute_ms=(now - t0) * 1e3, fps=fps, dropped_frames=self.frames.dropped,
            device=str(lm.device), model=lm.name, frozen=view.frozen, records=snap.records,
        ))
        for error in proc.errors():
            if error != self._reported:
                self._reported = error
                self.on_error(error)
