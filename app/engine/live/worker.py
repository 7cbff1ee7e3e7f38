"""The inference worker: newest frame in → hooked forward → one small Result out."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from app.core.messages import (
    LOGITS,
    AblationMode,
    AttributionMode,
    Explanation,
    Frame,
    Normalization,
    Patch,
    Prediction,
    Result,
    ViewState,
)
from app.core.slot import LatestSlot
from app.core.tiling import GridGeometry, grid_geometry
from app.engine.analyses.ablation.deletion import (
    Ablation,
    ForkError,
    RunningChannelMeans,
    fork_safe,
)
from app.engine.analyses.attribution.attributor import Attributor, saliency_to_uint8
from app.engine.analyses.blocks import ClassScore, LiveBlocks
from app.engine.live.attention_view import LiveAttention
from app.engine.live.explain_pass import InPassExplainer, freeze_parameters
from app.engine.live.live_topk import LiveTopK
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.predict import top_predictions
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.receptive_field import receptive_field
from app.engine.runtime.recorder import ActivationRecorder, default_layer, discover_layers
from app.engine.runtime.tiling import normalize_on_device, tile_on_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What one frame produced, before it is wrapped with timing into a Result."""

    crop: tuple[int, int, int, int]
    layer: str
    geometry: GridGeometry
    mosaic: np.ndarray
    unit: int
    unit_map: np.ndarray
    unit_max: np.ndarray
    unit_mean: np.ndarray
    predictions: tuple[Prediction, ...]
    intact_predictions: tuple[Prediction, ...] | None = None
    attribution: np.ndarray | None = None  # (S, S) uint8 over the model's input
    attribution_ms: float = 0.0
    live_top: tuple[Patch, ...] = ()
    explanation: Explanation | None = None
    attention: np.ndarray | None = None
    attention_text: str = ""


class FrameProcessor:
    """Runs one model on frames with every layer hooked; owns the recorder's hooks.

    Synchronous, so the live worker, the benchmark and tests share exactly one code path.
    """

    def __init__(self, loaded: LoadedModel, top_k: int = 5, top_k_frames: int = 9,
                 dictionary_top: int = 4, groups: int = 6) -> None:
        self.loaded = loaded
        self._blocks: LiveBlocks | None = None  # made on the first explained frame
        self._blocks_shape = (dictionary_top, groups)
        self.explain_error: str | None = None
        self.explain_in_pass = True  # False: the second pass of LiveBlocks (what it must equal)
        self.top_k = top_k
        layers, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
        self.layers = layers
        self.by_name = {info.name: info for info in layers}
        self.default_layer = default_layer(layers)
        self.recorder = ActivationRecorder(loaded.module).__enter__()
        self.recorder.clone_layers |= clone
        freeze_parameters(loaded.module)  # a backward in the live pass stops at the layer
        self._in_pass = InPassExplainer(loaded.module, self.recorder, dictionary_top, groups)
        self._attention = LiveAttention(loaded.module)
        self._geometries: dict[tuple[str, float], GridGeometry] = {}
        # deletion hooks run before the recorder's, so the grid shows what the rest of the
        # network receives; with nothing deleted they cost one dictionary lookup
        self.ablation = Ablation(loaded.module).__enter__()
        self._ablated: tuple[tuple[str, tuple[int, ...]], ...] = ()
        # the deletions a forked pass failed on (a parallel branch): two passes for those
        self._fork_failed: tuple[tuple[str, tuple[int, ...]], ...] | None = None
        self._fork_safe = fork_safe(loaded.module)
        self.fork_ablation = True  # False: always two passes (what a forked one must equal)
        self._attributor: Attributor | None = None
        self.attribution_error: str | None = None  # why attribution is unavailable, once
        # this session's best frames per unit of the selected layer, kept on the device
        self.live_topk = LiveTopK(k=top_k_frames)
        self._live_layer: str | None = None
        self._live_key: tuple[str, int, int] | None = None  # (layer, unit, change count)
        self._live_changes = 0
        self._live_top: tuple[Patch, ...] = ()

    def close(self) -> None:
        self.ablation.remove_hooks()
        self.recorder.remove()

    def geometry(self, layer: str, aspect: float = 1.0) -> GridGeometry:
        key = (layer, round(min(max(aspect, 0.2), 5.0), 1))
        g = self._geometries.get(key)
        if g is None:
            c, h, w = self.by_name[layer].shape
            g = grid_geometry(c, h, w, pad=1, aspect=key[1])
            self._geometries[key] = g
        return g

    def _intact_and_ablated(self, x: torch.Tensor, view: ViewState,
                            ) -> tuple[torch.Tensor, tuple[Prediction, ...]]:
        """The ablated logits (1, classes) and the intact network's top-k, in one forked pass
        (~1.1 forwards) where the model allows it, else in two."""
        if self.fork_ablation and self._fork_safe and self._fork_failed != view.ablated:
            means = self.ablation.means
            state = means.snapshot() if isinstance(means, RunningChannelMeans) else None
            try:
                with self.ablation.forked():
                    both = self.recorder.run(x)
                return both[-1:], self._top(both[:1])
            except (ForkError, RuntimeError) as exc:
                if state is not None and isinstance(means, RunningChannelMeans):
                    means.restore(state)  # the frame counts once
                if "out of memory" in str(exc):
                    raise  # a real failure, not a model the fork cannot handle
                # a deleted unit on a branch the doubled batch does not reach, or a merge of
                # such a branch with it: correct results need two passes for these deletions
                log.info("live ablation in two passes for %s: %s", view.ablated, exc)
                self._fork_failed = view.ablated
        with self.ablation.paused():
            intact = self._top(self.recorder.run(x))
        return self.recorder.run(x), intact

    def resolve(self, view: ViewState) -> tuple[str, int]:
        layer = view.layer if view.layer in self.by_name else self.default_layer
        channels = self.by_name[layer].shape[0]
        return layer, min(max(view.unit, 0), channels - 1)

    def _sync_ablation(self, view: ViewState, layer: str) -> None:
        mode = view.ablation_mode
        if mode != self.ablation.mode:
            self.ablation.remove_hooks()
            self.ablation = Ablation(self.loaded.module, mode=mode).__enter__()
            self._ablated = ()
        if view.ablated != self._ablated:
            self.ablation.clear()
            for name, units in view.ablated:
                if name in self.by_name:
                    limit = self.by_name[name].shape[0]
                    self.ablation.set(name, [u for u in units if 0 <= u < limit])
            self._ablated = view.ablated
        if mode == AblationMode.MEAN:
            self.ablation.watch(layer)  # gather its means before a unit of it is deleted

    def _attribute(self, x: torch.Tensor, view: ViewState, layer: str,
                   unit: int) -> tuple[np.ndarray | None, float]:
        if view.attribution == AttributionMode.OFF or self.attribution_error:
            return None, 0.0
        t0 = time.perf_counter()
        try:
            if self._attributor is None:
                self._attributor = Attributor(self.loaded.module)
            self._attributor.mode = view.attribution
            h, w = self.by_name[layer].shape[1:]
            at = view.attribution_at
            pos = None if at is None else (min(max(at[0], 0), h - 1), min(max(at[1], 0), w - 1))
            with torch.enable_grad():
                saliency = self._attributor.attribute(x, layer, unit, pos)
        except Exception as exc:  # a model attribution cannot handle: say so once, go on
            self.attribution_error = f"attribution unavailable: {exc}".splitlines()[0]
            return None, 0.0
        return saliency_to_uint8(saliency), (time.perf_counter() - t0) * 1e3

    def _explain(self, x: torch.Tensor, view: ViewState, layer: str) -> Explanation | None:
        """The building blocks of `layer` for the explained class: one more forward and
        backward (on the attributor's private copy), a sort and a warm-started NMF."""
        if not view.explain or self.explain_error or self.by_name[layer].shape[1:] == (1, 1):
            return None  # a 1×1 layer (the logits) has no positions to explain
        t0 = time.perf_counter()
        try:
            if self._blocks is None:
                top, k = self._blocks_shape
                self._blocks = LiveBlocks(self.loaded, groups=k, dictionary_top=top)
            with torch.enable_grad():
                f = self._blocks.process(x, layer, ClassScore(view.explained_class,
                                                              view.versus_class))
        except Exception as exc:  # a model the blocks cannot handle: say so once, go on
            self.explain_error = f"explanation unavailable: {exc}".splitlines()[0]
            return None
        a, words, groups = f.attribution, f.dictionary, f.groups
        assert words is not None and groups is not None
        target = a.target if a.target is not None else int(np.argmax(a.logits))
        g = groups.attribution if groups.attribution is not None else np.zeros(groups.k)
        return Explanation(
            layer, target, a.vs, a.score, a.probability, a.channels, a.spatial, words.units,
            words.values, groups.spatial, groups.channels, g.astype(np.float32), groups.note,
            (time.perf_counter() - t0) * 1e3)

    def _explains_in_pass(self, view: ViewState, layer: str) -> bool:
        return (view.explain and self.explain_in_pass and not self.explain_error
                and layer != LOGITS and self.by_name[layer].shape[1:] != (1, 1))

    def _run(self, x: torch.Tensor, view: ViewState, layer: str
             ) -> tuple[torch.Tensor, tuple[Prediction, ...] | None, Explanation | None]:
        """The recorded pass (forked with deletions, differentiable with the blocks on):
        (logits, the intact top-k when units are deleted, the in-pass explanation)."""
        if view.ablated:
            logits, intact = self._intact_and_ablated(x, view)
            return logits, intact, None
        if self._explains_in_pass(view, layer):
            try:
                logits, explanation = self._in_pass.run(x, view, layer)
                return logits, None, explanation
            except Exception as exc:  # a model the in-pass hook cannot handle: two passes
                log.info("building blocks in a second pass for %s: %s", layer, exc)
                self.explain_in_pass = False
        return self.recorder.run(x), None, None

    def _top(self, logits: torch.Tensor) -> tuple[Prediction, ...]:
        return top_predictions(logits[0], self.top_k, self.loaded.class_names)

    def _update_live_top(self, acts: torch.Tensor, layer: str, unit: int,
                         frame_id: int | None, image: np.ndarray,
                         crop: tuple[int, int, int, int]) -> tuple[Patch, ...]:
        if layer != self._live_layer:
            self.live_topk.reset()
            self._live_layer = layer
            self._live_changes += 1
        if frame_id is not None:
            rf = receptive_field(self.loaded.module, layer, self.loaded.preprocess.size)
            if self.live_topk.update(acts, frame_id, image, crop, rf):
                self._live_changes += 1
        key = (layer, unit, self._live_changes)
        if key != self._live_key:  # the same tuple while nothing changed: the GUI skips it
            self._live_key = key
            self._live_top = tuple(
                Patch(e.thumbnail, e.value, f"frame {e.frame_id}", e.box)
                for e in self.live_topk.top(unit)
            )
        return self._live_top

    @torch.no_grad()
    def process(self, image: np.ndarray, view: ViewState,
                frame_id: int | None = None) -> Snapshot:
        """One frame through the hooked net. `frame_id` None: a re-render of a seen frame."""
        lm = self.loaded
        img = frame_to_tensor(image, lm.device)
        x = prepare_batch([img], lm.preprocess)
        layer, unit = self.resolve(view)
        self._sync_ablation(view, layer)
        probe = self._attention.probe(view)  # no extra pass: it reads the recorded one's
        with probe:
            logits, intact, explanation = self._run(x, view, layer)
        attention, attention_text = self._attention.read(probe, view, layer)
        # layers above a forked deletion hold [intact; ablated]: show what the net receives
        acts = self.recorder.activations[layer][-1]
        g = self.geometry(layer, view.grid_aspect)
        per_channel = view.normalization == Normalization.PER_CHANNEL
        mosaic = tile_on_device(normalize_on_device(acts, per_channel), g)
        flat = acts.flatten(1).float()
        # one round of small copies: the mosaic (uint8), one map and a few vectors
        mosaic_np = mosaic.cpu().numpy()
        unit_map = acts[unit].float().cpu().numpy()
        stats = torch.stack([flat.amax(1), flat.mean(1)]).cpu().numpy()
        preds = self._top(logits)
        attribution, attribution_ms = self._attribute(x, view, layer, unit)
        h, w = image.shape[:2]
        crop = lm.preprocess.crop_box(h, w)
        live_top = self._update_live_top(acts, layer, unit, frame_id, image, crop)
        if explanation is None:
            explanation = self._explain(x, view, layer)
        return Snapshot(
            crop, layer, g, mosaic_np, unit, unit_map,
            stats[0], stats[1], preds, intact, attribution, attribution_ms, live_top,
            explanation, attention, attention_text,
        )


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
            device=str(lm.device), model=lm.name, frozen=view.frozen,
            attribution=snap.attribution,
            attribution_mode=view.attribution if snap.attribution is not None
            else AttributionMode.OFF,
            attribution_ms=snap.attribution_ms, intact_predictions=snap.intact_predictions,
            live_top=snap.live_top, explanation=snap.explanation,
            attention=snap.attention, attention_text=snap.attention_text,
        ))
        for error in (proc.attribution_error, proc.explain_error):
            if error and error != self._reported:
                self._reported = error
                self.on_error(error)
