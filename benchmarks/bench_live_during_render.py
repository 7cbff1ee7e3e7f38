"""Does the live view keep its frame rate while a whole layer renders in the background?

The live pipeline of `deepvis bench` (bundled model, every layer hooked, sample video frames,
a fresh frame always ready) is timed in alternating rounds:

- alone;
- while "Render whole layer" runs as the GUI runs it (`app.session.jobs`: its own thread, niced);
- while the same render runs at normal priority (what the nice buys).

Reports live results/s and the render's units/s in each round, medians over rounds. A camera
delivers 30 frames/s; the live view keeps its rate if it stays above the source's.

    .venv/bin/python benchmarks/bench_live_during_render.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from report import print_report  # noqa: E402  (benchmarks/report.py, beside this script)

from app.core.jobs import Cancelled, run_job  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.core.requests import JobEvent, RenderLayerRequest  # noqa: E402
from app.core.settings import load_settings, with_overrides  # noqa: E402
from app.engine.live.worker import FrameProcessor  # noqa: E402
from app.engine.runtime.models import load_model  # noqa: E402
from app.session.bench import load_frames, pipeline_fps, start_live_worker  # noqa: E402
from app.session.jobs import JobContext, Jobs, make_job  # noqa: E402


def render_in_background(settings, loaded, layer: str, channels: int, niced: bool):  # type: ignore[no-untyped-def]
    """Start rendering every unit of `layer`; → (stop() → units done per second)."""
    done: list[tuple[float, int]] = []

    def emit(message: object) -> None:
        if isinstance(message, JobEvent) and not message.finished:
            done.append((time.perf_counter(), message.done))

    request = RenderLayerRequest(layer)
    work = make_job(JobContext(settings, loaded, {layer: channels}), request)
    assert work is not None
    started = time.perf_counter()
    if niced:
        jobs = Jobs(emit)
        jobs.start(request, work)

        def stop() -> float:
            jobs.stop()
            return _rate(done, started)
    else:
        cancel = threading.Event()

        def run() -> None:
            with contextlib.suppress(Cancelled):
                run_job(work, lambda p: emit(JobEvent(request, p.done, p.total, p.line())),
                        cancel)

        thread = threading.Thread(target=run, name="render-normal-priority")
        thread.start()

        def stop() -> float:
            cancel.set()
            thread.join()
            return _rate(done, started)
    return stop


def _rate(done: list[tuple[float, int]], started: float) -> float:
    """Units finished per second up to the last finished batch."""
    finished = [(t, n) for t, n in done if n > 0]
    if not finished:
        return 0.0
    t, n = finished[-1]
    return n / (t - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="_blocks.8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300, help="live results per measurement")
    ap.add_argument("--batch", type=int, default=4, help="units per render batch")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # as `deepvis` does at start
    cache = tempfile.TemporaryDirectory(prefix="deepvis-bench-render-")
    settings = with_overrides(load_settings(ROOT / "settings.toml"), "cache", dir=cache.name)
    # small batches, so the render's progress is seen within one live measurement
    settings = with_overrides(settings, "render", batch_size=args.batch)
    device = torch.device("cpu")
    loaded = load_model(settings.model.default, device, settings.model)
    images = load_frames(None, settings)
    processor = FrameProcessor(loaded, settings.view.top_k)
    channels = next(i.shape[0] for i in processor.layers if i.name == args.layer)
    worker, frames_slot, results, errors = start_live_worker(processor)
    live: dict[str, list[float]] = {"alone": [], "render niced": [], "render normal": []}
    render: dict[str, list[float]] = {"render niced": [], "render normal": []}
    try:
        pipeline_fps(worker, frames_slot, results, images, 30)  # warm-up
        for r in range(args.rounds):
            live["alone"].append(pipeline_fps(worker, frames_slot, results, images, args.frames))
            for label, niced in (("render niced", True), ("render normal", False)):
                # a fresh cache each time, so every round renders (nothing served from disk)
                round_settings = with_overrides(settings, "cache", dir=f"{cache.name}/{r}{niced}")
                stop = render_in_background(round_settings, loaded, args.layer, channels, niced)
                time.sleep(1.0)  # let the render get going (model copy, first batch)
                live[label].append(pipeline_fps(worker, frames_slot, results, images,
                                                args.frames))
                render[label].append(stop())
    finally:
        worker.stop()
        worker.join()
        cache.cleanup()
    if errors:
        raise RuntimeError(errors[0])
    report = {
        "model": loaded.name, "device": str(device), "threads": torch.get_num_threads(),
        "render_layer": args.layer, "render_preset": settings.render.preset,
        "render_batch": args.batch,
        "live_fps": {k: round(statistics.median(v), 2) for k, v in live.items()},
        "live_fps_rounds": {k: [round(x, 2) for x in v] for k, v in live.items()},
        "render_units_per_s": {k: round(statistics.median(v), 2) for k, v in render.items()},
    }
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
