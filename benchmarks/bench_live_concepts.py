"""A concept layer's live cost: the same frames with its source layer shown and with it shown.

Showing a concept layer adds its codes (NNLS of the source map on K directions, on the
device) to the frame; the bar is ≤ 10 % of a live frame. A dictionary of each layer is
learned first on the bundled sample photos into a throwaway cache; then `FrameProcessor`
processes the same real frames with the source shown and with the concept layer shown, rounds
alternating so machine noise hits both alike; medians reported, as ms per frame and frames/s.

    .venv/bin/python benchmarks/bench_live_concepts.py [--layers _blocks.8 _blocks.11]
        [--k 32] [--frames 20] [--rounds 3] [--device cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.capture.images import read_image  # noqa: E402
from app.core.jobs import run_job  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.core.view import ViewState  # noqa: E402
from app.engine.analyses.concepts import learn_concepts  # noqa: E402
from app.engine.live.worker import FrameProcessor  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["_blocks.8", "_blocks.11"])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--frames", type=int, default=20, help="frames per round and variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # as `deepvis` does at start
    device = torch.device(args.device)
    samples = ROOT / "assets" / "samples"
    frames = [read_image(p) for p in sorted(samples.glob("*.jpg"))]
    loaded = load_bundled(device)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for layer in args.layers:
            run_job(learn_concepts(loaded, samples, layer, args.k, "nmf", samples=4000,
                                   iterations=100, cache_dir=cache))
        processor = FrameProcessor(loaded, cache_dir=cache)
        try:
            for layer in args.layers:
                concepts = f"{layer}@nmf{args.k}"
                assert concepts in processor.by_name, concepts

                def per_frame(view: ViewState) -> float:
                    t0 = time.perf_counter()
                    for i in range(args.frames):
                        processor.process(frames[i % len(frames)], view)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    return (time.perf_counter() - t0) / args.frames * 1e3

                views = {"source": ViewState(layer=layer), "concepts": ViewState(layer=concepts)}
                times: dict[str, list[float]] = {k: [] for k in views}
                for view in views.values():  # warm-up
                    per_frame(view)
                for _ in range(args.rounds):
                    for name, view in views.items():
                        times[name].append(per_frame(view))
                med = {k: statistics.median(v) for k, v in times.items()}
                rows.append({
                    "layer": layer, "concept_layer": concepts,
                    "shape": list(processor.by_name[layer].shape),
                    "source_ms": round(med["source"], 2), "concepts_ms": round(med["concepts"], 2),
                    "source_fps": round(1e3 / med["source"], 1),
                    "concepts_fps": round(1e3 / med["concepts"], 1),
                    "extra_share": round(med["concepts"] / med["source"] - 1, 3)})
        finally:
            processor.close()
    report = {"machine": f"{platform.machine()}, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads",
              "device": str(device), "k": args.k, "frames_per_round": args.frames,
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
