"""Live attribution's cost per frame: the worker's frame processing with attribution off and on.

Side by side in one run, rounds alternating so machine noise hits both alike; medians are
reported. "off" is `FrameProcessor.process` (forward with every layer hooked, grid tiled,
results to the CPU); "on" adds what the worker will do per frame when attribution is shown:
`Attributor.attribute(x, layer, unit)` (a truncated forward with autograd up to the layer and
one backward to the input) plus mapping the saliency to uint8. A bare `model(x)` is timed
too, so the extra cost reads in forwards. The bar (issue 5): at most one extra backward pass
per frame, i.e. attribution alone ≲ 2–3 forwards.

    .venv/bin/python benchmarks/bench_attribution.py [--frames 8] [--rounds 3] [--threads N]
        [--layers _blocks.8 _blocks.15] [--modes guided gradient deconvnet] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.capture.images import read_image  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.core.view import ViewState  # noqa: E402
from app.engine.analyses.attribution.attributor import MODES, Attributor, saliency_to_uint8  # noqa: E402
from app.engine.live.worker import FrameProcessor  # noqa: E402
from app.engine.runtime.device import pick_device  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch  # noqa: E402


def _per_frame(fn, frames, n) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for i in range(n):
        fn(frames[i % len(frames)])
    return (time.perf_counter() - t0) / n * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8, help="frames per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", nargs="+", default=["_blocks.8", "_blocks.15"])
    ap.add_argument("--modes", nargs="+", default=["guided"], choices=MODES)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # as `deepvis` does at start
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_bundled(pick_device(args.device))
    photos = [read_image(p) for p in sorted((ROOT / "assets" / "samples").glob("*.jpg"))]
    proc = FrameProcessor(loaded)
    attributor = Attributor(loaded)
    xs = {id(p): prepare_batch([frame_to_tensor(p, loaded.device)], loaded.preprocess)
          for p in photos}

    def bare(img):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            loaded.module(xs[id(img)])

    report: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                    f"{os.cpu_count()} cores, torch {torch.__version__}, "
                    f"{torch.get_num_threads()} threads", "device": str(loaded.device),
                    "frames_per_round": args.frames, "rounds": args.rounds, "results": []}
    try:
        for layer in args.layers:
            for mode in args.modes:
                attributor.mode = mode
                view = ViewState(layer=layer, unit=3)

                def off(img, view=view):  # type: ignore[no-untyped-def]
                    proc.process(img, view)

                def on(img, view=view, layer=layer):  # type: ignore[no-untyped-def]
                    snap = proc.process(img, view)
                    # the worker has x already; here it is prepared once per photo up front
                    sal = attributor.attribute(xs[id(img)], layer, snap.unit)
                    saliency_to_uint8(sal)

                def only(img, layer=layer):  # type: ignore[no-untyped-def]
                    attributor.attribute(xs[id(img)], layer, 3)

                for fn in (bare, off, on, only):  # warm-up: allocator, oneDNN, the copy
                    _per_frame(fn, photos, 2)
                times: dict[str, list[float]] = {"bare": [], "off": [], "on": [], "only": []}
                for _ in range(args.rounds):
                    for name, fn in (("bare", bare), ("off", off), ("on", on), ("only", only)):
                        times[name].append(_per_frame(fn, photos, args.frames))
                med = {k: statistics.median(v) for k, v in times.items()}
                row = {
                    "layer": layer, "mode": mode,
                    "bare_forward_ms": round(med["bare"], 1),
                    "frame_off_ms": round(med["off"], 1), "frame_on_ms": round(med["on"], 1),
                    "attribution_ms": round(med["only"], 1),
                    "fps_off": round(1e3 / med["off"], 1), "fps_on": round(1e3 / med["on"], 1),
                    "attribution_in_forwards": round(med["only"] / med["bare"], 2),
                    "on_over_off": round(med["on"] / med["off"], 2),
                }
                report["results"].append(row)
                if not args.json:
                    print(f"{layer:12s} {mode:9s} bare {row['bare_forward_ms']:6.1f} ms | "
                          f"frame off {row['frame_off_ms']:6.1f} ms ({row['fps_off']:5.1f} fps)"
                          f" on {row['frame_on_ms']:6.1f} ms ({row['fps_on']:5.1f} fps) | "
                          f"attribution {row['attribution_ms']:6.1f} ms = "
                          f"{row['attribution_in_forwards']:.2f} forwards", flush=True)
    finally:
        proc.close()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
