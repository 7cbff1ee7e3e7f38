"""`deepvis predict`: top classes of images, optionally with units deleted.

Files that cannot be read are skipped and listed (on stderr, and under "skipped" in the
JSON), as `scan` does: one bad file in a folder no longer costs the predictions of the
others. Only when nothing at all can be read is it an error (exit 2, one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli.common import CliError, add_common, load_for, print_json, print_skipped, settings_for

NAME = "predict"
HELP = "top classes for images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or folders (every image in them, recursively)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--ablate", action="append", metavar="LAYER:UNITS",
                   help="delete units of a layer, e.g. _blocks.8:0-15 (repeatable); shows the "
                   "intact and the ablated top-k side by side")
    p.add_argument("--ablate-mode", choices=("zero", "mean"), default="zero",
                   help="replace deleted units by 0 or by their mean over the given images")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    args.images = _expand(args.images)
    if args.top_k < 1:
        raise CliError("--top-k must be positive")
    loaded, settings = load_for(args)
    images, args.images, args.skipped = _read_all(args.images,
                                                  settings.source.max_image_pixels)
    if args.ablate:
        return _predict_ablated(args, loaded, images)
    from app.engine.runtime.predict import predict_images

    results = predict_images(loaded, images, top_k=args.top_k)
    if args.json:
        print_json({
            "model": loaded.name, "device": str(loaded.device),
            "results": [{"image": str(p), "top": _rows(preds)}
                        for p, preds in zip(args.images, results, strict=True)],
            "skipped": _skipped_doc(args.skipped),
        })
        return 0
    for path, preds in zip(args.images, results, strict=True):
        print(path)
        for pr in preds:
            print(f"  {pr.probability * 100:6.2f}%  {pr.label} ({pr.index})")
    print_skipped(args.skipped)
    return 0


def _read_all(paths: list[str], max_pixels: int
              ) -> tuple[list[Any], list[str], list[tuple[str, str]]]:
    """(images, their paths, skipped (path, reason)); an error only if none can be read."""
    from app.capture.images import ImageError, read_image

    images, read, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_image(path, max_pixels))
            read.append(path)
        except ImageError as exc:
            if len(paths) == 1:
                raise
            skipped.append((path, str(exc).splitlines()[0]))
    if not images:
        raise CliError(f"none of the {len(paths)} images could be read "
                       f"(e.g. {skipped[0][1]})")
    return images, read, skipped


def _skipped_doc(skipped: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"path": p, "reason": r} for p, r in skipped]


def _expand(paths: list[str]) -> list[str]:
    """Files as given; a folder → its images (recursively, in path order)."""
    from app.core.files import list_images

    out: list[str] = []
    for path in paths:
        p = Path(path).expanduser()
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise CliError(f"no images in {path}")
            out += found
        elif p.is_file():
            out.append(path)
        else:
            raise CliError(f"image not found: {path}")
    return out


def _rows(preds: Any) -> list[dict[str, Any]]:
    return [{"index": pr.index, "label": pr.label, "probability": round(pr.probability, 6)}
            for pr in preds]


def _predict_ablated(args: argparse.Namespace, loaded: Any, images: list[Any]) -> int:
    """--ablate: intact and ablated top-k side by side."""
    from app.engine.analyses.ablation import (
        AblationError,
        parse_ablation,
        parse_ablations,
        predict_ablated,
    )
    from app.engine.runtime.directions import direction_layers
    from app.engine.runtime.recorder import discover_layers

    try:
        named = [parse_ablation(spec)[0] for spec in args.ablate]
    except AblationError as exc:
        raise CliError(str(exc)) from None
    # a concept layer (`L@nmf32:3`): its units are deleted from its source (see deletion)
    directions = direction_layers(loaded, named, settings_for(args).cache.dir)
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                                [d.set for d in directions.values()])
    try:
        units = parse_ablations(args.ablate, {i.name: i.channels for i in layers})
    except AblationError as exc:
        raise CliError(str(exc)) from None
    results = predict_ablated(loaded, images, units, top_k=args.top_k, mode=args.ablate_mode,
                              directions=directions)
    if args.json:
        print_json({
            "model": loaded.name, "device": str(loaded.device),
            "ablate": dict(units.items()), "ablate_mode": args.ablate_mode,
            "results": [{"image": str(p), "top": _rows(r.intact), "ablated_top": _rows(r.ablated),
                         "intact_top1_probability_after": round(r.intact_top1_after, 6)}
                        for p, r in zip(args.images, results, strict=True)],
            "skipped": _skipped_doc(args.skipped),
        })
        return 0
    spec = "; ".join(f"{layer}: {len(u)} units" for layer, u in units.items())
    for path, r in zip(args.images, results, strict=True):
        print(f"{path}   (ablated {spec}, {args.ablate_mode})")
        print(f"  {'intact':<38s} ablated")
        for a, b in zip(r.intact, r.ablated, strict=True):
            left = f"{a.probability * 100:6.2f}%  {a.label} ({a.index})"
            print(f"  {left:<38s} {b.probability * 100:6.2f}%  {b.label} ({b.index})")
    print_skipped(args.skipped)
    return 0
