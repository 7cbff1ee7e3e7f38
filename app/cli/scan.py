"""`deepvis scan`: top-activating dataset images and receptive-field crops for every unit.

    deepvis scan DATASET [--layers L...] [--top-k K] [--batch-size B] [--workers W]
                 [--shard I/N] [--out DIR] [--restart] [--json]
    deepvis scan --merge A B [...] [--out C] [--json]

Results go to the cache (`[cache].dir`, else the user's cache folder) per model, weights
and preprocessing, one folder per layer, unless --out names a folder. An interrupted scan
resumes when run again; `--shard I/N` scans every N-th file from the I-th, and `--merge`
joins such parts into exactly the result of one scan of the whole. Under torchrun
(`torchrun --nproc-per-node N -m app scan DATASET …`) the ranks split the files and rank 0
writes the one merged result, as one process would.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import (
    CliError,
    add_common,
    load_for,
    print_json,
    print_result,
    print_skipped,
    require_positive,
    settings_for,
)
from app.cli.ranks import drive, is_root, join_ranks
from app.core.scan_results import ScanResult

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.patches import ScanReport

NAME = "scan"
HELP = "top-activating dataset patches for every unit of some layers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="folder of images (searched recursively)")
    p.add_argument("--layers", nargs="+", metavar="L",
                   help="layers to scan (default: [scan].layers found in the model, "
                   "else its default layer)")
    p.add_argument("--top-k", type=int, help="images kept per unit (default: [scan].top_k)")
    p.add_argument("--batch-size", type=int, help="images per forward pass")
    p.add_argument("--workers", type=int, help="processes decoding images (0: in-process)")
    p.add_argument("--shard", metavar="I/N", help="scan only files I, I+N, I+2N, … (0-based)")
    p.add_argument("--out", type=Path, help="result folder instead of the cache")
    p.add_argument("--restart", action="store_true",
                   help="ignore checkpoints and finished results; scan from scratch")
    p.add_argument("--merge", nargs="+", type=Path, metavar="SCAN",
                   help="merge scan folders of disjoint parts of a dataset instead of scanning")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _shard(spec: str | None) -> tuple[int, int]:
    if not spec:
        return 0, 1
    i, sep, n = spec.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        raise CliError(f"--shard must look like 0/4, got {spec!r}") from None
    if not sep or count <= 0 or not 0 <= index < count:
        raise CliError(f"--shard must be I/N with 0 <= I < N, got {spec!r}")
    return index, count


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if args.merge:
        if args.dataset:
            raise CliError("give either DATASET or --merge, not both")
        return _merge(args, settings)
    if not args.dataset:
        raise CliError("give a DATASET folder to scan (or --merge A B)")
    dataset = Path(args.dataset).expanduser()
    if not dataset.exists():
        raise CliError(f"dataset not found: {dataset}")
    require_positive(top_k=args.top_k, batch_size=args.batch_size)
    if args.workers is not None and args.workers < 0:
        raise CliError("--workers must not be negative")
    shard = _shard(args.shard)
    cfg = settings.scan
    if cfg.crop_size <= 0 or cfg.checkpoint_every <= 0:
        raise CliError("[scan].crop_size and [scan].checkpoint_every must be positive")

    ranks = join_ranks(args)  # torchrun: every rank scans its part, rank 0 merges
    loaded, settings = load_for(args)
    from app.core.scan_results import load_scan_folder
    from app.engine.analyses.patches import ScanError, default_layers, scan

    layers = args.layers or default_layers(loaded, cfg.layers)
    try:
        report = drive(scan(
            loaded, dataset, layers, top_k=args.top_k or cfg.top_k,
            batch_size=args.batch_size or cfg.batch_size,
            workers=cfg.workers if args.workers is None else args.workers,
            cache_dir=settings.cache.dir, out=args.out, shard=shard,
            crop_size=cfg.crop_size, checkpoint_every=cfg.checkpoint_every,
            max_pixels=settings.source.max_image_pixels,
            max_side=settings.source.max_frame_side, resume=not args.restart, ranks=ranks,
        ), "scan", ranks)
    except ScanError as exc:
        raise CliError(str(exc)) from None
    if not is_root(ranks):
        return 0  # rank 0 prints the merged result
    results = {}
    for layer, folder in report.layers.items():
        res = load_scan_folder(folder)
        if res is None:  # written a moment ago: only another process could have removed it
            raise CliError(f"the scan of {layer} in {folder} is gone or torn; run it again")
        results[layer] = res
    if report.resumed_from:
        print(f"scan: resumed an interrupted scan after {report.resumed_from} of "
              f"{report.files} files, from its checkpoint in {report.folder}", file=sys.stderr)
    done = ScanOutput(loaded.name, report, results)
    print_result(done, args.json, _table, _report_doc)
    if not args.json:
        print_skipped(report.skipped)
    return 0


@dataclass(frozen=True)
class ScanOutput:
    """What `deepvis scan` prints: the job's report and each layer's stored result."""

    model: str
    report: ScanReport
    results: dict[str, ScanResult]


def _table(done: ScanOutput) -> Iterator[str]:
    report = done.report
    how = "already scanned (cached)" if report.cached else (
        f"{report.scanned} images in {report.seconds:.1f} s "
        f"({report.images_per_s:.1f} img/s)"
        + (f", resumed after {report.resumed_from}" if report.resumed_from else ""))
    yield f"{done.model}: {report.dataset}: {how}"
    for layer, res in done.results.items():
        rf = res.meta["rf"]
        best = res.top(0)[:1]
        first = f"; unit 0 best: {Path(best[0].path).name} {best[0].value:.3g}" if best else ""
        yield (f"  {layer}: {res.units} units × top-{res.top_k}, receptive field "
               f"{rf['size'][0]} px, stride {rf['stride'][0]:g}"
               f"{' (' + rf['note'] + ')' if rf.get('note') else ''} → {res.folder}{first}")


def _entries(res: Any) -> list[list[dict[str, Any]]]:
    return [[{"path": e.path, "value": e.value, "y": e.y, "x": e.x, "box": list(e.box)}
             for e in res.top(u)] for u in range(res.units)]


def _layer_doc(layer: str, res: Any) -> dict[str, Any]:
    return {"name": layer, "folder": str(res.folder), "units": res.units, "top_k": res.top_k,
            "map_shape": res.meta["map_shape"], "receptive_field": res.meta["rf"],
            "top": _entries(res)}


def _report_doc(done: ScanOutput) -> dict[str, Any]:
    report = done.report
    return {
        "model": done.model, "dataset": report.dataset, "folder": str(report.folder),
        "files": report.files, "scanned": report.scanned,
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        "cached": report.cached, "resumed_from": report.resumed_from,
        "seconds": round(report.seconds, 3), "images_per_s": round(report.images_per_s, 2),
        "layers": [_layer_doc(layer, res) for layer, res in done.results.items()],
    }


def _merge(args: argparse.Namespace, settings: Any) -> int:
    from app.core.scan_results import load_scan_folder, scan_dir

    for p in args.merge:
        if not p.is_dir():
            raise CliError(f"scan folder not found: {p}")
    out = args.out
    if out is None:
        first = next((load_scan_folder(sub) for sub in sorted(args.merge[0].iterdir())
                      if load_scan_folder(sub) is not None), None)
        if first is None:
            raise CliError(f"no finished scan in {args.merge[0]}")
        from app.engine.runtime.cache import cache_root

        out = scan_dir(cache_root(settings.cache.dir), first.meta["model_key"])
    from app.engine.analyses.patches import ScanError, merge_scans

    try:
        folders = merge_scans(args.merge, out)
    except ScanError as exc:
        raise CliError(str(exc)) from None
    results = {str(r.layer): r for r in (load_scan_folder(f) for f in folders) if r}
    if args.json:
        print_json({"merged": [str(p) for p in args.merge], "folder": str(out),
                    "layers": [_layer_doc(layer, res) for layer, res in results.items()]})
        return 0
    for layer, res in results.items():
        print(f"{layer}: {res.units} units × top-{res.top_k} from "
              f"{len(res.meta['datasets'])} parts → {res.folder}")
    return 0
