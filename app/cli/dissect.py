"""`deepvis dissect`: name what each unit of some layers detects (network dissection)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import CliError, add_common, load_for, print_result, settings_for
from app.cli.ranks import drive, is_root, join_ranks

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.dissection import DissectionResult

NAME = "dissect"
HELP = "concept labels per unit (network dissection) on a Broden, mask or plain image folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", type=Path, metavar="DATASET",
                   help="Broden folder (index.csv), images + masks/ + labels.csv, or any "
                        "image folder (built-in colour concepts; class sub-folders)")
    p.add_argument("--layers", nargs="+", metavar="L",
                   help="layers to dissect (default: [scan].layers found in the model)")
    p.add_argument("--quantile", type=float,
                   help="top fraction of activations that makes a unit's mask "
                        "([dissect].quantile)")
    p.add_argument("--min-iou", type=float, help="IoU above which a unit is interpretable "
                   "([dissect].min_iou)")
    p.add_argument("--categories", nargs="+", metavar="C",
                   help="concept categories to use (default: all of the dataset's)")
    p.add_argument("--batch-size", type=int, help="images per batch ([dissect].batch_size)")
    p.add_argument("--workers", type=int, help="processes decoding images ([scan].workers)")
    p.add_argument("--top-k", type=int, help="top images drawn per unit ([dissect].top_k)")
    p.add_argument("--out", type=Path, help="result folder (default: the cache)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute even if an identical dissection is stored")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    cfg = settings.dissect
    quantile = cfg.quantile if args.quantile is None else args.quantile
    min_iou = cfg.min_iou if args.min_iou is None else args.min_iou
    batch = cfg.batch_size if args.batch_size is None else args.batch_size
    workers = settings.scan.workers if args.workers is None else args.workers
    top_k = cfg.top_k if args.top_k is None else args.top_k
    if not 0.0 < quantile < 1.0:
        raise CliError(f"--quantile must be between 0 and 1, got {quantile}")
    if not 0.0 <= min_iou <= 1.0:
        raise CliError(f"--min-iou must be between 0 and 1, got {min_iou}")
    if batch <= 0 or workers < 0 or top_k < 0:
        raise CliError("--batch-size must be positive, --workers and --top-k not negative")
    if not args.dataset.is_dir():
        raise CliError(f"dataset folder not found: {args.dataset}")

    from app.engine.analyses.dissection import DissectionError, dissect, find_concepts

    try:  # a malformed dataset is reported before the model loads
        find_concepts(args.dataset, tuple(args.categories) if args.categories else None)
    except DissectionError as exc:
        raise CliError(str(exc)) from None
    ranks = join_ranks(args)  # torchrun: every rank takes its batches, rank 0 merges
    loaded, settings = load_for(args)

    from app.engine.runtime.recorder import default_layer, discover_layers

    layers = args.layers
    if not layers:
        infos, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
        names = {i.name for i in infos}
        layers = [n for n in settings.scan.layers if n in names] or [default_layer(infos)]
    try:
        result = drive(dissect(
            loaded, args.dataset, layers, quantile=quantile, min_iou=min_iou,
            categories=args.categories, batch_size=batch, workers=workers,
            cache_dir=settings.cache.dir, out=args.out, top_k=top_k,
            max_pixels=settings.source.max_image_pixels, resume=not args.no_cache,
            checkpoint_every=settings.scan.checkpoint_every,  # one setting for every pass
            ranks=ranks, spool_gb=settings.dissect.spool_gb,
        ), "dissect", ranks)
    except DissectionError as exc:
        raise CliError(str(exc)) from None
    if not is_root(ranks):
        return 0  # rank 0 prints the merged result
    print(f"dissect: {'cached result' if result.cached else 'results'} in {result.folder}",
          file=sys.stderr)
    if result.resumed:
        print(f"dissect: {resumed_text(result)}", file=sys.stderr)
    for path, reason in result.skipped:
        print(f"dissect: skipped {path}: {reason}", file=sys.stderr)
    return print_result(result, args.json, _table)


def resumed_text(result: DissectionResult) -> str:
    """Where an interrupted dissection was taken up, for the user."""
    stage, images = result.resumed_at
    name = {1: "pass 1 (thresholds)", 2: "pass 2 (tally)"}.get(stage, "a checkpoint")
    return (f"resumed an interrupted run in {name} after {images} image"
            f"{'' if images == 1 else 's'}, from its checkpoint in {result.folder}")


def _table(result: DissectionResult) -> Iterator[str]:
    yield (f"{result.model} on {result.dataset} ({result.kind}, {result.images} images, "
           f"quantile {result.quantile}, IoU > {result.min_iou})")
    for name, layer in result.layers.items():
        s = layer.summary
        yield (f"{name}: {s.interpretable}/{s.units} interpretable, {s.unique} unique  "
               + "  ".join(f"{c} {v.interpretable}/{v.unique}"
                           for c, v in s.by_category.items()))
        best = sorted((u for u in layer.units if u.interpretable), key=lambda u: -u.iou)[:10]
        for u in best:
            yield f"  unit {u.unit:4d}  {u.label:<20s} {u.category:<10s} IoU {u.iou:.3f}"
