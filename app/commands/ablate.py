"""`deepvis ablate`: accuracy vs. units of a layer deleted, and each unit's class selectivity."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from app.cli import add_common

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


class _Bar:
    """One self-overwriting progress line on stderr."""

    def __init__(self) -> None:
        self.stage = ""
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        end = done >= total
        if stage == self.stage and not end and now - self.last < 0.2:
            return
        if stage != self.stage and self.stage:
            sys.stderr.write("\n")
        self.stage, self.last = stage, now
        width = 24
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\rablate: {stage:13s} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{total} images")
        sys.stderr.flush()

    def close(self) -> None:
        if self.stage:
            sys.stderr.write("\n")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from app.cli import CliError, load_for, print_json, settings_for

    settings = settings_for(args)
    seeds = args.seeds if args.seeds is not None else settings.ablate.seeds
    points = args.points if args.points is not None else settings.ablate.points
    batch = args.batch_size if args.batch_size is not None else settings.ablate.batch_size
    if seeds < 1 or points < 2 or batch < 1:
        raise CliError("--seeds and --batch-size must be positive, --points at least 2")
    if not args.dataset.is_dir():
        raise CliError(f"dataset folder not found: {args.dataset}")
    loaded, settings = load_for(args)

    from app.engine.ablation import AblationError
    from app.engine.ablation_curves import (
        curves_document,
        find_dataset,
    )
    from app.engine.recorder import discover_layers

    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    names = {info.name for info in layers}
    if args.layer not in names:
        raise CliError(f"no recordable layer {args.layer!r} in {loaded.name} "
                       "(see `deepvis layers`)")
    try:
        dataset = find_dataset(args.dataset, loaded.class_names)
    except AblationError as exc:
        raise CliError(str(exc)) from None
    bar = _Bar()
    try:
        doc = curves_document(
            loaded, dataset, str(args.dataset), args.layer, seeds=seeds, points=points,
            batch_size=batch, max_pixels=settings.source.max_image_pixels,
            cache_dir=settings.cache.dir, method=args.method, use_cache=not args.no_cache,
            progress=bar,
        )
    except AblationError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    if doc["cached"]:
        print(f"ablate: cached result {doc['cache_file']}", file=sys.stderr)
    else:
        print(f"ablate: {doc['method_note']}", file=sys.stderr)
    for path in doc.get("skipped", []):
        print(f"ablate: skipped unreadable {path}", file=sys.stderr)
    if args.json:
        print_json(doc)
        return 0
    _print_table(doc)
    return 0


def _print_table(doc: dict) -> None:
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


def predict_ablated_command(args: argparse.Namespace, loaded: Any, images: list[Any]) -> int:
    """`deepvis predict --ablate`: intact and ablated top-k side by side (called by cli)."""
    from app.cli import CliError, print_json
    from app.engine.ablation import AblationError, parse_ablations
    from app.engine.predict import predict_ablated
    from app.engine.recorder import discover_layers

    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    try:
        units = parse_ablations(args.ablate, {i.name: i.channels for i in layers})
    except AblationError as exc:
        raise CliError(str(exc)) from None
    results = predict_ablated(loaded, images, units, top_k=args.top_k, mode=args.ablate_mode)

    def rows(preds: Any) -> list[dict[str, Any]]:
        return [{"index": pr.index, "label": pr.label, "probability": round(pr.probability, 6)}
                for pr in preds]

    if args.json:
        print_json({
            "model": loaded.name, "device": str(loaded.device),
            "ablate": {layer: u for layer, u in units.items()}, "ablate_mode": args.ablate_mode,
            "results": [{"image": str(p), "top": rows(r.intact), "ablated_top": rows(r.ablated),
                         "intact_top1_probability_after": round(r.intact_top1_after, 6)}
                        for p, r in zip(args.images, results, strict=True)],
        })
        return 0
    spec = "; ".join(f"{layer}: {len(u)} units" for layer, u in units.items())
    for path, r in zip(args.images, results, strict=True):
        print(f"{path}   (ablated {spec}, {args.ablate_mode})")
        print(f"  {'intact':<38s} ablated")
        for a, b in zip(r.intact, r.ablated, strict=True):
            left = f"{a.probability * 100:6.2f}%  {a.label} ({a.index})"
            print(f"  {left:<38s} {b.probability * 100:6.2f}%  {b.label} ({b.index})")
    return 0
