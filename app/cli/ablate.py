"""`deepvis ablate`: accuracy vs. units of a layer deleted, and each unit's class selectivity."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import CliError, add_common, load_for, print_result, settings_for
from app.cli.progress import TextProgress
from app.cli.ranks import drive, is_root, join_ranks

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.ablation import ClassUnitsResult, CurveResult

NAME = "ablate"
HELP = "accuracy vs. units deleted, and class selectivity, on a labeled folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", type=Path, metavar="DATASET",
                   help="image folder; class sub-folders named by class name or index label it")
    p.add_argument("--layer", required=True, help="layer whose units are deleted (dotted name)")
    p.add_argument("--seeds", type=int, help="random deletion orders averaged ([ablate].seeds)")
    p.add_argument("--points", type=int, help="fractions deleted, 0 … 100 %% ([ablate].points)")
    p.add_argument("--batch-size", type=int, help="images per batch ([ablate].batch_size)")
    p.add_argument("--method", choices=("auto", "cut", "naive"), default="auto",
                   help="auto: run only the layers above LAYER per level when the graph allows")
    p.add_argument("--no-cache", action="store_true", help="recompute even if a result is cached")
    p.add_argument("--class", dest="class_", metavar="C",
                   help="rank LAYER's units by how much class C (name or index) needs each, "
                        "with the delete-top-n and keep-only-top-n curves (Bau et al. 2020)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    seeds = args.seeds if args.seeds is not None else settings.ablate.seeds
    points = args.points if args.points is not None else settings.ablate.points
    batch = args.batch_size if args.batch_size is not None else settings.ablate.batch_size
    if seeds < 1 or points < 2 or batch < 1:
        raise CliError("--seeds and --batch-size must be positive, --points at least 2")
    if not args.dataset.is_dir():
        raise CliError(f"dataset folder not found: {args.dataset}")
    from app.engine.runtime.distributed import launched

    if args.class_ is not None and launched():
        raise CliError("ablate --class does not run under torchrun yet: run it as one process")
    ranks = join_ranks(args)  # torchrun: every rank takes its batches of images
    loaded, settings = load_for(args)

    from app.engine.analyses.ablation import AblationError, find_dataset, layer_curves
    from app.engine.runtime.directions import direction_layers, is_direction_layer
    from app.engine.runtime.recorder import discover_layers

    if args.class_ is not None and is_direction_layer(args.layer):
        raise CliError("ablate --class does not take a concept layer yet: drop --class")
    directions = direction_layers(loaded, [args.layer], settings.cache.dir)
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                                [d.set for d in directions.values()])
    names = {info.name for info in layers}
    if args.layer not in names:
        raise CliError(f"no recordable layer {args.layer!r} in {loaded.name} "
                       "(see `deepvis layers`)")
    try:
        dataset = find_dataset(args.dataset, loaded.class_names)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    if args.class_ is not None:
        return _run_class(args, loaded, settings, dataset, batch)
    try:
        result = drive(layer_curves(
            loaded, dataset, str(args.dataset), args.layer, seeds=seeds, points=points,
            batch_size=batch, max_pixels=settings.source.max_image_pixels,
            cache_dir=settings.cache.dir, method=args.method, use_cache=not args.no_cache,
            ranks=ranks,
        ), "ablate", ranks)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    if not is_root(ranks):
        return 0  # rank 0 prints the merged result
    if result.cached:
        print(f"ablate: cached result {result.cache_file}", file=sys.stderr)
    else:
        print(f"ablate: {result.note}", file=sys.stderr)
    for path in result.skipped:
        print(f"ablate: skipped unreadable {path}", file=sys.stderr)
    return print_result(result, args.json, _curves_table)


def _curves_table(result: CurveResult) -> Iterator[str]:
    rnd = result.random_curves()
    mean, std = rnd.mean(0), rnd.std(0)
    high = result.curves["selectivity_high_to_low"]
    low = result.curves["selectivity_low_to_high"]
    yield (f"{result.model}  {result.layer}  ({result.units} units, {result.images} images, "
           f"{result.accuracy_means}; {result.method})")
    yield (f"{'deleted':>9s}  {'random (mean ± sd)':>20s}  {'selective first':>15s}  "
           f"{'selective last':>14s}")
    for i, frac in enumerate(result.fractions):
        yield (f"{frac * 100:8.1f}%  {mean[i] * 100:12.1f} ± {std[i] * 100:4.1f}%  "
               f"{high[i] * 100:14.1f}%  {low[i] * 100:13.1f}%")
    sel = result.selectivity
    if sel:
        ranked = sorted(range(len(sel)), key=lambda u: -sel[u])[:5]
        yield "most class-selective units: " + ", ".join(f"{u} ({sel[u]:.2f})" for u in ranked)


def _run_class(args: argparse.Namespace, loaded: Any, settings: Any, dataset: Any,
               batch: int) -> int:
    """`--class C`: the layer's units ranked by what deleting each costs class C."""
    from app.core.jobs import run_job
    from app.engine.analyses.ablation import AblationError, class_units
    from app.engine.analyses.ablation.datasets import match_class

    try:
        index = match_class(str(args.class_).strip(), loaded.class_names)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    if index is None:
        raise CliError(f"no class {args.class_!r} in {loaded.name} (a class name or index)")
    bar = TextProgress("ablate")
    try:
        result = run_job(class_units(
            loaded, dataset, str(args.dataset), args.layer, index, batch_size=batch,
            max_pixels=settings.source.max_image_pixels, cache_dir=settings.cache.dir,
            method=args.method, use_cache=not args.no_cache), bar)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    return print_result(result, args.json, _class_table)


def _class_table(result: ClassUnitsResult) -> Iterator[str]:
    yield (f"{result.model}  {result.layer}  class {result.class_index} {result.class_name!r}  "
           f"({result.class_images} images of it, {result.other_images} others; "
           f"{result.method})")
    top = result.ranking[:10]
    yield "units it needs most: " + ", ".join(
        f"{u} (−{result.drop[u] * 100:.0f} %)" for u in top)
    yield (f"{'n':>6s}  {'delete top n: class':>20s} {'other':>7s}  "
           f"{'keep only top n: class':>23s} {'other':>7s}")
    for i, n in enumerate(result.counts):
        yield (f"{n:6d}  {result.delete_top['class'][i] * 100:19.1f}% "
               f"{result.delete_top['other'][i] * 100:6.1f}%  "
               f"{result.keep_top['class'][i] * 100:22.1f}% "
               f"{result.keep_top['other'][i] * 100:6.1f}%")
