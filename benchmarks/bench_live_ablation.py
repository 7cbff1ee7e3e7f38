"""Live ablation's cost per frame: nothing deleted, one forked pass, two full passes.

With units deleted the worker shows the ablated network and the intact network's top-5.
It gets both from one pass whose batch doubles at the first deleted layer (`Ablation.forked`);
the alternative is two full passes. All three are `FrameProcessor.process` on the same real
frames, rounds alternating so machine noise hits them alike; medians reported.

    .venv/bin/python benchmarks/bench_live_ablation.py [--layers _blocks.4 _blocks.8 _blocks.11]
        [--units 3] [--frames 20] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
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
from app.core.view import DeletionView, ViewState  # noqa: E402
from app.engine.live.stages import DeletionStage  # noqa: E402
from app.engine.live.worker import FrameProcessor  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["_blocks.4", "_blocks.8", "_blocks.11"])
    ap.add_argument("--units", type=int, default=3, help="units deleted (the first N)")
    ap.add_argument("--frames", type=int, default=20, help="frames per round and variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # as `deepvis` does at start
    frames = [read_image(p) for p in sorted((ROOT / "assets" / "samples").glob("*.jpg"))]
    processor = FrameProcessor(load_bundled(torch.device("cpu")))

    def per_frame(view: ViewState, two_passes: bool) -> float:
        processor.stage(DeletionStage).fork = not two_passes
        t0 = time.perf_counter()
        for i in range(args.frames):
            processor.process(frames[i % len(frames)], view)
        return (time.perf_counter() - t0) / args.frames * 1e3

    rows = []
    for layer in args.layers:
        off = ViewState(layer=layer, unit=0)
        on = ViewState(layer=layer, unit=0,
                       parts=(DeletionView(((layer, tuple(range(args.units))),)),))
        times: dict[str, list[float]] = {"off": [], "forked": [], "two_passes": []}
        for view, two in ((off, False), (on, False), (on, True)):  # warm-up
            per_frame(view, two)
        for _ in range(args.rounds):
            times["off"].append(per_frame(off, False))
            times["forked"].append(per_frame(on, False))
            times["two_passes"].append(per_frame(on, True))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"layer": layer, **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                     "forked_over_off": round(med["forked"] / med["off"], 2),
                     "two_passes_over_forked": round(med["two_passes"] / med["forked"], 2)})
    report = {"machine": f"{platform.machine()}, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads",
              "device": "cpu", "units_deleted": args.units, "frames_per_round": args.frames,
              "rounds": args.rounds, "results": rows}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
