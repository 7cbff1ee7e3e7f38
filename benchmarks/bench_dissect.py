"""Dissection benchmark: throughput against bare batched inference, and memory.

    python benchmarks/bench_dissect.py [--images N] [--memory-images M] [--model M]
                                       [--layers L...] [--batch-size B] [--workers W]
                                       [--rounds R] [--no-memory] [--json]

Throughput: the same images, the same model and batch size, in alternating rounds, side
by side in one run: bare `model(x)` on the dissection's own decoded stream (whole image
squashed to the input size), a one-pass `scan` of the deepest layer (`_blocks.15`), and the
`dissect` job end to end with the built-in colour concepts (both passes, tallies, top-image
strips, checkpoints, the unit-map spool and atomic writes included) of the four default
layers and of the deepest alone, in one network pass (the default, maps spooled) and, for
comparison, in two (`spool_gb=0`). Figures are images of the dataset per second, best of
the rounds; `vs_scan` and `vs_bare` are ratios of those bests. Bar (issue 26): the four
default layers ≥ 0.8 × the one-pass scan of the deepest layer.

All three run as `deepvis` runs them: idle OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE`)
and freed memory is kept for reuse (`keep_freed_memory`).

Memory: the dissection of M and of 10×M images, each in a fresh child process, peak RSS
sampled during the job (bench_scan's method). Bar: the job's own increment changes by
< 10 % of the peak (`dissect_peak_growth`). M is 72 by default: with freed memory kept for
reuse, the allocator's pool fills over the first dozen batches and then stays (the job's
increment was 117 MB at 24 images, 282 MB at 240, 258 MB at 720), so M = 24 measured the
pool filling, not the job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli import quiet_openmp_waits  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402

quiet_openmp_waits()  # as `deepvis` starts: before torch loads, for bare, scan and dissect
keep_freed_memory()

from bench_scan import _load, _rss_mb, _RssSampler, make_dataset, scan_once  # noqa: E402
from report import print_report  # noqa: E402


def bare_inference(loaded, folder: Path, batch_size: int, workers: int) -> float:  # type: ignore[no-untyped-def]
    """Images/s of the whole model(x) on the dissection's own decoded stream."""
    import torch

    from app.engine.analyses.dissection import find_concepts
    from app.engine.analyses.dissection.loader import ConceptImages, collate, normalize
    from app.engine.runtime.dataset_pass import make_loader

    concepts = find_concepts(folder)
    ds = ConceptImages(concepts, range(len(concepts.items)), loaded.preprocess, 80_000_000,
                       labels=False)
    n = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in make_loader(ds, batch_size, workers, collate):
            if batch["images"]:
                loaded.module(normalize(batch["images"], loaded.preprocess, loaded.device))
                n += len(batch["images"])
    return n / (time.perf_counter() - start)


def dissect_once(loaded, folder: Path, layers: list[str], batch_size: int, workers: int,  # type: ignore[no-untyped-def]
                 out: Path, spool_gb: float = 4.0) -> float:
    from app.core.jobs import run_job
    from app.engine.analyses.dissection import dissect

    start = time.perf_counter()
    result = run_job(dissect(loaded, folder, layers, batch_size=batch_size, workers=workers,
                             out=out, resume=False, spool_gb=spool_gb))
    return result.images / (time.perf_counter() - start)


def child_memory(data: str, model: str, layers: list[str], batch_size: int, workers: int,
                 out: str) -> dict:
    import torch

    loaded = _load(model)
    with torch.no_grad():
        loaded.module(torch.zeros(batch_size, 3, loaded.preprocess.size,
                                  loaded.preprocess.size))
    base = _rss_mb()
    sampler = _RssSampler()
    sampler.start()
    try:
        rate = dissect_once(loaded, Path(data), layers, batch_size, workers, Path(out))
    finally:
        sampler.stop.set()
        sampler.join()
    return {"baseline_rss_mb": round(base, 1), "peak_rss_mb": round(sampler.peak, 1),
            "increment_mb": round(sampler.peak - base, 1), "images_per_s": round(rate, 2)}


def memory_growth(tmp: Path, n: int, args: argparse.Namespace, layers: list[str]) -> dict:
    runs: dict[str, list[dict]] = {"n": [], "10n": []}
    data = {label: make_dataset(tmp / f"mem{count}", count, seed=1)
            for label, count in (("n", n), ("10n", 10 * n))}
    for r in range(args.memory_rounds):
        for label in ("n", "10n"):
            cmd = [sys.executable, __file__, "--child-memory", str(data[label]),
                   "--model", args.model, "--batch-size", str(args.batch_size),
                   "--workers", str(args.workers), "--out", str(tmp / f"mem-{label}-{r}"),
                   "--layers", *layers]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    res: dict = {}
    for label, rows in runs.items():
        res[label] = {k: round(statistics.median(row[k] for row in rows), 2) for k in rows[0]}
    a, b = res["n"], res["10n"]
    res["images"] = [n, 10 * n]
    res["peak_rss_growth"] = round(b["peak_rss_mb"] / a["peak_rss_mb"] - 1, 4)
    res["dissect_peak_growth"] = round((b["increment_mb"] - a["increment_mb"])
                                       / a["peak_rss_mb"], 4)
    return res


def _load_average() -> str:
    """`uptime`'s 1, 5 and 15 minute load: the box is shared, the figures need it."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--memory-images", type=int, default=72)
    p.add_argument("--memory-rounds", type=int, default=1)
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--layers", nargs="+")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child-memory", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, args.model, args.layers,
                                      args.batch_size, args.workers, args.out)))
        return
    import torch

    loaded = _load(args.model)
    four = ["_blocks.4", "_blocks.8", "_blocks.11", "_blocks.15"]
    deepest = four[-1:]
    # (layers, spool budget in GB: 0 = the network twice)
    layer_sets = {"four default, one pass": (four, 4.0), "deepest, one pass": (deepest, 4.0),
                  "four default, two passes": (four, 0.0),
                  "deepest, two passes": (deepest, 0.0)}
    if args.layers:
        layer_sets["chosen, one pass"] = (args.layers, 4.0)
    report: dict = {"model": args.model, "images": args.images, "batch_size": args.batch_size,
                    "workers": args.workers, "threads": torch.get_num_threads(),
                    "load_before": _load_average()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = make_dataset(tmp / "data", args.images)
        bare: list[float] = []
        scan: list[float] = []
        ours: dict[str, list[float]] = {k: [] for k in layer_sets}
        for r in range(args.rounds):
            bare.append(bare_inference(loaded, data, args.batch_size, args.workers))
            scan.append(scan_once(loaded, data, deepest, args.batch_size, args.workers,
                                  tmp / f"scan-{r}")[0])
            for key, (layers, gb) in layer_sets.items():
                ours[key].append(dissect_once(loaded, data, layers, args.batch_size,
                                              args.workers, tmp / f"out-{key}-{r}", gb))
        report["bare_images_per_s"] = [round(v, 2) for v in bare]
        report["scan_deepest_images_per_s"] = [round(v, 2) for v in scan]
        report["scan_vs_bare"] = round(max(scan) / max(bare), 3)
        for key, (layers, _) in layer_sets.items():
            report[f"dissect {key} {'+'.join(layers)}"] = {
                "images_per_s": [round(v, 2) for v in ours[key]],
                "vs_scan": round(max(ours[key]) / max(scan), 3),
                "vs_bare": round(max(ours[key]) / max(bare), 3)}
        report["load_after"] = _load_average()
        if not args.no_memory:
            report["memory"] = memory_growth(tmp, args.memory_images, args,
                                             args.layers or ["_blocks.4"])
    print_report(report, args.json)


if __name__ == "__main__":
    main()
