"""The building blocks' cost per frame: plain inference vs inference + attribution, and NMF.

Side by side in one run, rounds alternating so machine noise hits every variant alike;
medians reported. Per frame of the sample photos (bundled model, 224 px):

- `bare`: `model(x)` without autograd — plain inference;
- `live_off`: the live worker's `FrameProcessor.process` (every layer hooked, grid tiled);
- `attribution`: `LayerAttributor.attribute(x, layer, top-1)` — channel and spatial
  attribution from one forward (autograd only above the layer) and one backward to the layer;
- `forward_backward`: a whole-net forward with autograd and a backward to the input, on a
  private copy: what "one extra forward + backward" costs, for scale;
- `live_on`: `live_off` + `LiveBlocks.process` (attribution, dictionary, warm-started groups)
  in a second pass on a private copy;
- `live_in_pass`: what the worker does now with the blocks shown (`BlocksView(on=True)`):
  the recorded forward itself made differentiable at the layer, one backward, the same
  dictionary and groups;
- NMF alone on the frame's activations: cold (NNDSVDa start, ≤ 100 HALS iterations) and warm
  (the previous frame's groups, 20 iterations), and the semantic dictionary.

The bar (issue 11): attribution at most one extra backward pass per frame; NMF groups must not
halve the live rate. Also timed once per photo: the 100-step integrated attribution and the
deletion test (jobs on a frozen frame, not per-frame work).

    .venv/bin/python benchmarks/bench_blocks.py [--layer L] [--frames 10] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.capture.images import read_image  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.core.view import BlocksView, ViewState  # noqa: E402
from app.engine.analyses.blocks import (  # noqa: E402
    ClassScore,
    LayerAttributor,
    LiveBlocks,
    faithfulness,
    integrated,
    neuron_groups,
    semantic_dictionary,
)
from app.engine.live.worker import FrameProcessor  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch  # noqa: E402
from app.engine.runtime.recorder import default_layer, discover_layers  # noqa: E402
from app.engine.runtime.truncate import private_copy  # noqa: E402
from benchmarks.report import print_report  # noqa: E402


def _per_frame(fn: Callable[[int], object], n: int) -> float:
    """ms per call of fn(i), i = 0 … n-1."""
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="", help="layer explained (default: the default layer)")
    ap.add_argument("--frames", type=int, default=10, help="frames per round and variant")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # as `deepvis` does at start
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    loaded = load_bundled(cpu)
    layer = args.layer or default_layer(discover_layers(loaded.module, 224, cpu)[0])
    photos = [read_image(p) for p in sorted((ROOT / "assets" / "samples").glob("*.jpg"))]
    xs = [prepare_batch([frame_to_tensor(p, cpu)], loaded.preprocess) for p in photos]
    n = len(xs)
    proc = FrameProcessor(loaded)
    view = ViewState(layer=layer, unit=0)
    attributor = LayerAttributor(loaded)
    blocks = LiveBlocks(loaded)
    reference = private_copy(loaded.module, cpu)
    top1 = ClassScore()

    def bare(i: int) -> None:
        with torch.no_grad():
            loaded.module(xs[i % n])

    def live_off(i: int) -> None:
        proc.process(photos[i % n], view)

    def attribution(i: int) -> None:
        attributor.attribute(xs[i % n], layer, top1)

    def forward_backward(i: int) -> None:
        x = xs[i % n].clone().requires_grad_(True)
        out = reference(x)
        torch.autograd.grad(out[0].max(), x)

    explained = ViewState(layer=layer, unit=0, parts=(BlocksView(True),))

    def live_in_pass(i: int) -> None:
        proc.process(photos[i % n], explained)

    def live_on(i: int) -> None:
        proc.process(photos[i % n], view)
        # groups start from the previous frame's, here another photo: the iteration count
        # is fixed once warm, so the cost is a live scene's
        blocks.process(xs[i % n], layer, top1)

    variants = {"bare": bare, "live_off": live_off, "attribution": attribution,
                "forward_backward": forward_backward, "live_on": live_on,
                "live_in_pass": live_in_pass}
    try:
        for fn in variants.values():  # warm-up: allocator, oneDNN, the private copies
            _per_frame(fn, 3)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                times[name].append(_per_frame(fn, args.frames))
    finally:
        proc.close()
    med = {k: statistics.median(v) for k, v in times.items()}

    # NMF and dictionary alone, on each photo's real activations at the layer
    atts = [attributor.attribute(x, layer, top1) for x in xs]
    cold_ms, warm_ms, dict_ms, errors_cold, errors_warm, iters = [], [], [], [], [], []
    for a in atts:
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            g = neuron_groups(a.activations, 6, gradient=a.gradient)
            t1 = time.perf_counter()
            w = neuron_groups(a.activations * 1.01, 6, gradient=a.gradient, warm=g, iterations=20)
            t2 = time.perf_counter()
            semantic_dictionary(a.activations, 4)
            t3 = time.perf_counter()
            cold_ms.append((t1 - t0) * 1e3)
            warm_ms.append((t2 - t1) * 1e3)
            dict_ms.append((t3 - t2) * 1e3)
        errors_cold.append(g.relative_error)
        errors_warm.append(w.relative_error)
        iters.append(g.iterations)

    # the jobs on a frozen frame, once per photo
    ig_s, faith_s, gaps = [], [], []
    for x, a in zip(xs, atts, strict=True):
        t0 = time.perf_counter()
        ig = integrated(attributor, x, layer, ClassScore(a.target), steps=100)
        t1 = time.perf_counter()
        faithfulness(attributor, x, layer, int(a.target or 0), a.channels)
        t2 = time.perf_counter()
        ig_s.append(t1 - t0)
        faith_s.append(t2 - t1)
        gaps.append(abs(ig.gap) / max(abs(ig.score - ig.baseline), 1e-9))

    c, h, w_ = atts[0].activations.shape
    nmf_warm = statistics.median(warm_ms)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "layer": f"{layer} ({c}×{h}×{w_})",
        "frames_per_round": args.frames, "rounds": args.rounds,
        "bare_forward_ms": round(med["bare"], 1),
        "attribution_ms": round(med["attribution"], 1),
        "attribution_in_forwards": round(med["attribution"] / med["bare"], 2),
        "forward_backward_ms": round(med["forward_backward"], 1),
        "attribution_over_forward_backward": round(med["attribution"] / med["forward_backward"],
                                                   2),
        "inference_plus_attribution_over_inference": round(
            (med["bare"] + med["attribution"]) / med["bare"], 2),
        "live_off_ms": round(med["live_off"], 1), "live_on_ms": round(med["live_on"], 1),
        "live_fps_off": round(1e3 / med["live_off"], 1),
        "live_fps_on": round(1e3 / med["live_on"], 1),
        "live_in_pass_ms": round(med["live_in_pass"], 1),
        "live_fps_in_pass": round(1e3 / med["live_in_pass"], 1),
        "live_in_pass_over_off": round(med["live_in_pass"] / med["live_off"], 2),
        "live_second_pass_over_off": round(med["live_on"] / med["live_off"], 2),
        "live_on_over_off": round(med["live_on"] / med["live_off"], 2),
        "nmf_cold_ms": round(statistics.median(cold_ms), 2),
        "nmf_cold_iterations": int(np.median(iters)),
        "nmf_warm20_ms": round(nmf_warm, 2),
        "nmf_warm_over_live_off": round(nmf_warm / med["live_off"], 3),
        "nmf_relative_error_cold_warm": f"{np.median(errors_cold):.3f} / "
                                        f"{np.median(errors_warm):.3f}",
        "dictionary_ms": round(statistics.median(dict_ms), 3),
        "integrated_100_steps_s": round(statistics.median(ig_s), 2),
        "integrated_completeness_gap": f"{np.median(gaps) * 100:.1f} % of score − baseline",
        "deletion_test_s": round(statistics.median(faith_s), 3),
        "per_round_ms": {k: [round(t, 1) for t in v] for k, v in times.items()},
    }
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
