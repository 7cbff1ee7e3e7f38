"""`deepvis bench`: the live pipeline against bare `model(x)`, side by side in one run.

Rounds alternate bare and pipeline so machine noise hits both alike; medians are
reported, with the spread of the per-round ratios (a round's pipeline over the bare round
just before it) so a noisy run shows as one. `load` starts that many competing CPU-bound
processes for the whole measurement, so how the pipeline holds up on a busy machine (a
user's laptop always is one) can be reproduced anywhere.

The pipeline is the real one: frames go through the latest-wins slot to the real
InferenceWorker thread (every layer hooked, grid tiled, results copied to the CPU)
and a consumer takes results as the GUI would. It shows the default layer, or `layer`: a
concept layer (`_blocks.8@nmf32`, from the cache, as the window has it) costs its codes on
top, so two runs, one on the source and one on the concept layer, give that cost.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from app.capture.sources import open_source
from app.core.jobs import Job, Progress
from app.core.messages import Frame
from app.core.results import Result
from app.core.settings import Settings
from app.core.slot import LatestSlot
from app.core.view import ViewState
from app.engine.live.worker import FrameProcessor, InferenceWorker
from app.engine.runtime.device import pick_device
from app.engine.runtime.models import LoadedModel, load_model
from app.engine.runtime.preprocess import Preprocess, frame_to_tensor, prepare_batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_frames(spec: str | None, settings: Settings, limit: int = 48) -> list[np.ndarray]:
    """Up to `limit` decoded RGB frames of `spec` (default: the bundled sample video)."""
    from app.session.live import sample_video

    source = open_source(spec or str(sample_video()), settings.source)
    frames: list[np.ndarray] = []
    try:
        misses = 0
        while len(frames) < limit and misses < 200:
            img = source.read()
            if img is None:
                if not source.is_live:
                    if source.count > 1 and len(frames) < source.count:
                        source.step(1)
                        continue
                    break
                misses += 1
                time.sleep(0.005)
                continue
            frames.append(img)
    finally:
        source.close()
    if not frames:
        raise RuntimeError(f"no frames from {spec}")
    return frames


def bare_fps(loaded: LoadedModel, xs: list[torch.Tensor], n: int) -> float:
    """`model(x)` frames/s, run on a thread of its own like the worker's.

    Each thread that calls into torch gets its own OpenMP team, and the team that ran
    last keeps spinning for a while; timing bare on the main thread and the pipeline on
    the worker thread would hand one side that penalty. Both sides run off the main
    thread and alternate, so each pays the same switch.
    """
    out: list[float] = []

    def loop() -> None:
        with torch.no_grad():
            _sync(loaded.device)
            t0 = time.perf_counter()
            for i in range(n):
                loaded.module(xs[i % len(xs)])
            _sync(loaded.device)
        out.append(n / (time.perf_counter() - t0))

    t = threading.Thread(target=loop, name="bench-bare")
    t.start()
    t.join()
    return out[0]


class FeedSlot(LatestSlot[Frame]):
    """The frame slot, telling the bench's feeder when the worker has taken a frame.

    The feeder used to poll the slot every 0.5 ms: 2,000 wake-ups a second that each take
    the GIL, which a real capture thread (woken at the camera's rate) never does. On a
    busy machine a poller preempted while it holds the GIL stalls the worker's next torch
    call for a whole time slice, so the bench charged the pipeline for its own feeder.
    """

    def __init__(self) -> None:
        super().__init__()
        self.taken = threading.Event()

    def take(self) -> Frame | None:
        item = super().take()
        if item is not None:
            self.taken.set()
        return item


def pipeline_fps(worker: InferenceWorker, frames_slot: LatestSlot[Frame],
                 results: LatestSlot[Result], images: list[np.ndarray], n: int) -> float:
    """Results per second with a source that always has a fresh frame ready."""
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            if frames_slot.peek() is None:  # like a camera: a new frame whenever taken
                frames_slot.put(Frame(images[i % len(images)], i, time.perf_counter(), "bench"))
                i += 1
            elif isinstance(frames_slot, FeedSlot):
                frames_slot.taken.wait(0.05)
                frames_slot.taken.clear()
            else:
                stop.wait(0.0005)

    feeder = threading.Thread(target=feed, name="bench-feeder", daemon=True)
    got = 0
    feeder.start()
    try:
        while results.wait_take(5.0) is None:  # the first result starts the clock
            pass
        t0 = time.perf_counter()
        while got < n:
            if results.wait_take(5.0) is not None:
                got += 1
        return got / (time.perf_counter() - t0)
    finally:
        stop.set()
        feeder.join()


class UnknownBenchLayer(ValueError):
    """`layer` is not one the live view has (one line, naming where to look)."""


def start_live_worker(processor: FrameProcessor, layer: str | None = None) -> tuple[
        InferenceWorker, LatestSlot[Frame], LatestSlot[Result], list[str]]:
    """The live pipeline as the app wires it, started on `layer` (default: the default
    layer): (worker, frame slot to feed, result slot to take from, errors it reported)."""
    frames_slot: LatestSlot[Frame] = FeedSlot()
    results: LatestSlot[Result] = LatestSlot()
    errors: list[str] = []
    worker = InferenceWorker(frames_slot, results, on_error=errors.append)
    frames_slot.listener = worker.poke
    worker.set_model(processor)
    worker.set_view(ViewState(layer=layer or processor.default_layer))
    worker.start()
    return worker, frames_slot, results, errors


# A plain Python busy loop; it exits by itself once its parent is gone (it is re-parented),
# so a killed bench never leaves one behind.
_BUSY_LOOP = (
    "import os\n"
    "parent = os.getppid()\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(200_000):\n"
    "        pass\n"
)


@contextmanager
def competing_load(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`n` CPU-bound processes running for the duration of the block, killed after it."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _BUSY_LOOP], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of `values`, rounded for the report."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def _loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return []


GuiTimer = Callable[[Settings, Result], float]  # ms the GUI thread takes to show a result


def bench(settings: Settings, source: str | None = None, frames: int = 120,
          size: int | None = None, rounds: int = 7,
          gui_timer: GuiTimer | None = None, load: int = 0, layer: str | None = None,
          ) -> Job[Progress, dict[str, Any]]:
    """Bare `model(x)` and the live pipeline in alternating rounds (a job: one step per
    measurement), beside `load` competing busy processes; `gui_timer` (the GUI's own
    measurement, passed in: the session never imports Qt) times the window too. The
    pipeline shows `layer` (default: the default layer; `UnknownBenchLayer` for one the
    live view lacks). Returns the report `deepvis bench` prints."""
    steps = 2 * rounds + 2 + (gui_timer is not None)
    yield Progress(0, steps, "loading the model")
    if settings.bench.threads:
        torch.set_num_threads(settings.bench.threads)
    device = pick_device(settings.model.device)
    loaded = load_model(settings.model.default, device, settings.model)
    if size and size != loaded.preprocess.size:
        p = loaded.preprocess
        loaded.preprocess = Preprocess(size, p.crop_fraction, p.mean, p.std)
    images = load_frames(source, settings)
    # bare sees the same frames as the pipeline, already preprocessed: model(x) alone
    xs = [prepare_batch([frame_to_tensor(im, device)], loaded.preprocess) for im in images]

    # concept layers only when one is asked for: the default run measures what it always did
    processor = FrameProcessor(loaded, settings.view.top_k,
                               cache_dir=settings.cache.dir if layer else None)
    if layer is not None and layer not in processor.by_name:
        concepts = [i.name for i in processor.layers if i.kind == "concepts"]
        hint = (f"concept layers in the cache: {', '.join(concepts)}" if concepts else
                "see `deepvis layers`")
        processor.close()  # its hooks off the model
        raise UnknownBenchLayer(f"--layer {layer}: not a layer of {loaded.name} ({hint})")
    shown = layer or processor.default_layer
    # the GUI measurement shows the widest layer; build its result now, because the
    # worker owns (and unhooks) the processor once it has run
    widest = max(processor.layers, key=lambda info: info.shape[0])
    gui_result = _one_result(processor, images[0], ViewState(layer=widest.name))
    worker, frames_slot, results, errors = start_live_worker(processor, shown)
    bare: list[float] = []
    pipe: list[float] = []
    load_before = _loadavg()
    try:
        with competing_load(load):
            yield Progress(1, steps, "warming up" + (f" beside {load} busy processes"
                                                       if load else ""))
            bare_fps(loaded, xs, settings.bench.warmup)
            pipeline_fps(worker, frames_slot, results, images, settings.bench.warmup)
            for i in range(rounds):
                yield Progress(2 + 2 * i, steps, f"round {i + 1}/{rounds}: bare model(x)")
                bare.append(bare_fps(loaded, xs, frames))
                yield Progress(3 + 2 * i, steps, f"round {i + 1}/{rounds}: live pipeline")
                pipe.append(pipeline_fps(worker, frames_slot, results, images, frames))
            load_after = _loadavg()
    finally:
        worker.stop()
        worker.join()
    if errors:
        raise RuntimeError(errors[0])
    ratios = [p / b for b, p in zip(bare, pipe, strict=True)]
    report: dict[str, Any] = {
        "model": loaded.name,
        "device": str(device),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_threads": torch.get_num_threads(),
        "input_size": loaded.preprocess.size,
        "frame_shape": list(images[0].shape),
        "hooked_layers": len(processor.layers),
        "cloned_layers": len(processor.recorder.clone_layers),
        "layer": shown,
        "layer_shape": list(processor.by_name[shown].shape),
        "frames_per_round": frames,
        "rounds": rounds,
        "bare_forward_fps": round(statistics.median(bare), 2),
        "pipeline_fps": round(statistics.median(pipe), 2),
        "ratio": round(statistics.median(pipe) / statistics.median(bare), 3),
        "ratio_spread": spread(ratios),
        "ratio_rounds": [round(v, 3) for v in ratios],
        "bare_fps_rounds": [round(v, 2) for v in bare],
        "pipeline_fps_rounds": [round(v, 2) for v in pipe],
        "competing_processes": load,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }
    if gui_timer is not None:
        yield Progress(steps - 1, steps, "GUI update of the widest layer")
        report["gui_layer"] = f"{widest.name} {'×'.join(map(str, widest.shape))}"
        report["gui_update_ms"] = round(gui_timer(settings, gui_result), 3)
    yield Progress(steps, steps, "done")
    return report


def _one_result(processor: FrameProcessor, image: np.ndarray, view: ViewState) -> Result:
    snap = processor.process(image, view)
    frame = Frame(image, 0, time.perf_counter(), "bench")
    return Result(
        seq=1, frame=frame, crop=snap.crop, layer=snap.layer, geometry=snap.geometry,
        mosaic=snap.mosaic, unit=snap.unit, unit_map=snap.unit_map, unit_max=snap.unit_max,
        unit_mean=snap.unit_mean, predictions=snap.predictions, latency_ms=0.0,
        compute_ms=0.0, fps=0.0, dropped_frames=0, device=str(processor.loaded.device),
        model=processor.loaded.name,
    )
