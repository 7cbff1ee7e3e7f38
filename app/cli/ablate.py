"""`deepvis ablate`: accuracy vs. units of a layer deleted, and each unit's class selectivity."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli.common import CliError, add_common, load_for, print_json, settings_for
from app.cli.progress import TextProgress

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
    loaded, settings = load_for(args)

    from app.core.jobs import run_job
    from app.engine.analyses.ablation import AblationError, find_dataset, layer_curves
    from app.engine.runtime.recorder import discover_layers

    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    names = {info.name for info in layers}
    if args.layer not in names:
        raise CliError(f"no recordable layer {args.layer!r} in {loaded.name} "
                       "(see `deepvis layers`)")
    try:
        dataset = find_dataset(args.dataset, loaded.class_names)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    bar = TextProgress("ablate")
    try:
        result = run_job(layer_curves(
            loaded, dataset, str(args.dataset), args.layer, seeds=seeds, points=points,
            batch_size=batch, max_pixels=settings.source.max_image_pixels,
            cache_dir=settings.cache.dir, method=args.method, use_cache=not args.no_cache,
        ), bar)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    if result.cached:
        print(f"ablate: cached result {result.cache_file}", file=sys.stderr)
    else:
        print(f"ablate: {result.note}", file=sys.stderr)
    for path in result.skipped:
        print(f"ablate: skipped unreadable {path}", file=sys.stderr)
    doc = result.to_json()
    if args.json:
        print_json(doc)
        return 0
    _print_table(doc)
    return 0


def _print_table(doc: dict[str, Any]) -> None:
    curves = doc["curves"]
    rnd = curves["random"]
    print(f"{doc['model']}  {doc['layer']}  ({doc['units']} units, {doc['images']} images, "
          f"{doc['accuracy_means']}; {doc['method']})")
    print(f"{'deleted':>9s}  {'random (mean ± sd)':>20s}  {'selective first':>15s}  "
          f"{'selective last':>14s}")
    for i, frac in enumerate(doc["fractions"]):
        print(f"{frac * 100:8.1f}%  {rnd['mean'][i] * 100:12.1f} ± {rnd['std'][i] * 100:4.1f}%  "
              f"{curves['selectivity_high_to_low'][i] * 100:14.1f}%  "
              f"{curves['selectivity_low_to_high'][i] * 100:13.1f}%")
    sel = doc["selectivity"]["index"]
    if sel:
        ranked = sorted(range(len(sel)), key=lambda u: -sel[u])[:5]
        print("most class-selective units: " + ", ".join(f"{u} ({sel[u]:.2f})" for u in ranked))
